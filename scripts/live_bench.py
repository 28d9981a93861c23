"""
Benchmark of live follow (not a test): the garment on a moving shopper, with ground truth.

1. Accuracy (no ROS): the bundled portraits at 640x480 moved by known transforms (shift up to
   15 % of the width, scale 0.85-1.15, rotation up to 10 degrees) and a drawn figure raising
   an arm. The pose masker (mediapipe) finds landmarks and masks in every frame; the try-on
   is a striped garment laid into the first frame's mask (a stand-in that is easy to check);
   the truth is the same transform applied to that try-on. Reports the IoU of the garment
   region and the mean absolute error inside the moved mask (0-255) with the global move
   registered on the try-on frame's image (as segmentation_node does) and, for comparison,
   from the landmarks alone (``*_landmarks_only``), and of the frame after each posed one,
   moved on by BETWEEN_STEP and not posed but registered on the posed frame
   (``*_between``: live.between register), plus the CPU time per 640x480 frame of the pose
   mask and of the warp (CPU seconds: less skewed by a loaded machine than wall time).
2. CPU per stage (no ROS but one publisher): milliseconds of CPU per 640x480 frame
   (time.process_time, median and minimum of repeats) of each stage of segmentation_node's
   worker: pose landmarks (mediapipe per image, and in tracking mode over the walk's
   consecutive frames, as live.between track poses the frames between), the agnostic mask,
   the overlay and its PNG, live warp + composite, a frame between (registration on the
   posed frame, warp, composite), image_conv, the JPEG of tryon/live/compressed and the
   publish; the cost of a posed and of a frame between, and the frames per second one worker
   thread sustains (1000 / ms) when every frame is posed and when one in three is (the demo:
   15 live frames, 5 masks a second). The worker is serial, so the second core does not add
   to it; it runs the camera, the server and the page.
3. The live topic (ROS): tryon_bringup --profile cpu,demo (the demo model) at make mirror's
   rates (masks at 5 a second, live frames at live.max_rate) with a camera replay of the
   astronaut walking sideways at 640x480 and 15 fps. After one try-on it counts
   tryon/live/compressed messages (what the page shows) with the try-on server idle and while
   try-ons run back to back, the latency from the camera frame's stamp to the composite's
   arrival, segmentation_node's CPU per live frame (from /proc) and the load average of each
   window. Keeps a strip of live frames (raw camera above, live composite below).

    source scripts/env.sh && python scripts/live_bench.py --strip docs/live_strip.png
"""

import argparse
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = (640, 480)
RIGID = [('shift +15%', 0.15, 1.0, 0.0), ('shift -15%', -0.15, 1.0, 0.0),
         ('scale 0.85', 0.0, 0.85, 0.0), ('scale 1.15', 0.0, 1.15, 0.0),
         ('rotate +10', 0.0, 1.0, 10.0), ('rotate -10', 0.0, 1.0, -10.0),
         ('shift 8% scale 1.1 rot 6', 0.08, 1.1, 6.0)]
WALK = [0, 24, 48, 72, 96, 72, 48, 24]  # px: the replay's sideways walk
# segmentation_node's counts on /diagnostics: frames between masks registered, posed or
# skipped, and frames dropped unprocessed
COUNTS = ('live_between_registered', 'live_between_posed', 'live_between_skipped',
          'dropped_frames')
BETWEEN_STEP = (24.0, 1.02, 1.5)  # the frame after a posed one: px right, scale, degrees


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--out', default='out/live_bench', help='folder for the results')
    parser.add_argument('--strip', default='', help='also write the strip PNG here')
    parser.add_argument('--seconds', type=float, default=15.0, help='seconds per rate window')
    parser.add_argument('--steps', type=int, default=10, help='steps per try-on while busy')
    parser.add_argument('--no-ros', action='store_true', help='accuracy and CPU parts only')
    parser.add_argument('--repeats', type=int, default=30, help='repeats per CPU stage')
    parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                        help='another setting for the stack (e.g. live.between=pose)')
    return parser


def portrait_frame(name: str) -> np.ndarray:
    """Return a bundled portrait centred on a 640x480 frame (its edge colours around it)."""
    from vton_ros.media import samples
    rgb = samples.portrait(name)
    h = SIZE[1]
    w = round(rgb.shape[1] * h / rgb.shape[0])
    person = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    left = (SIZE[0] - w) // 2
    return cv2.copyMakeBorder(person, 0, 0, left, SIZE[0] - w - left, cv2.BORDER_REPLICATE)


def striped_try_on(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the stand-in try-on: a striped red garment inside the mask."""
    yy, xx = np.mgrid[0:frame.shape[0], 0:frame.shape[1]]
    cloth = np.stack([170 + 50 * np.sin(yy / 7.0), 40 + 30 * np.sin(xx / 11.0),
                      60 + 25 * np.cos((xx - yy) / 9.0)], -1).clip(0, 255).astype(np.uint8)
    out = frame.copy()
    out[mask > 127] = cloth[mask > 127]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b)) / max(1, np.count_nonzero(a | b))


def accuracy() -> dict:
    """Part 1: IoU and MAE per portrait and transform; the warp's time per frame."""
    from vton_ros.media.live_warp import LiveFollower
    from vton_ros.media.registration import small_gray
    from vton_ros.pipeline.masks import create_mask_generator
    rows, times, cpu_mask, cpu_warp = [], [], [], []
    with create_mask_generator('pose') as masker:
        for name in ('astronaut', 'grace_hopper'):
            frame = portrait_frame(name)
            first = masker(frame)
            result = striped_try_on(frame, first.mask)
            follower, by_landmarks = LiveFollower(), LiveFollower()
            follower.set_result(result, first.mask, first.landmarks, 'upper', small_gray(frame))
            by_landmarks.set_result(result, first.mask, first.landmarks, 'upper')
            centre = tuple(float(v) for v in first.landmarks[[11, 12], :2].mean(0))
            for label, dx, scale, angle in RIGID:
                matrix = cv2.getRotationMatrix2D(centre, angle, scale)
                matrix[0, 2] += dx * SIZE[0]
                move = (lambda im, m=matrix: cv2.warpAffine(  # noqa: E731
                    im, m, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
                new = move(frame)
                cpu = time.process_time()  # CPU seconds of every thread (mediapipe's too)
                seen = masker(new)
                cpu_mask.append(time.process_time() - cpu)
                start, cpu = time.perf_counter(), time.process_time()
                live = follower.follow(new, seen.mask, seen.landmarks)
                times.append(time.perf_counter() - start)
                cpu_warp.append(time.process_time() - cpu)
                truth, truth_mask = move(result), move(first.mask) > 127
                row = {'portrait': name, 'motion': label, 'status': live.status}
                if live.live:  # where it breaks down: the masker's mask or the warp
                    err = np.abs(live.image.astype(float) - truth.astype(float)).mean(-1)
                    shown = truth_mask & live.region
                    row.update(iou=round(iou(live.garment, truth_mask), 3),
                               mae=round(float(err[truth_mask].mean()), 2),
                               iou_new_mask=round(iou(seen.mask > 127, truth_mask), 3),
                               iou_region=round(iou(live.region, truth_mask), 3),
                               iou_warped_mask=round(iou(live.warped_mask > 127, truth_mask), 3),
                               mae_where_shown=round(float(err[shown].mean()), 2))
                row.update(_between(follower, frame, result, first.mask, matrix, centre))
                alone = by_landmarks.follow(new, seen.mask, seen.landmarks)
                if alone.live:
                    err = np.abs(alone.image.astype(float) - truth.astype(float)).mean(-1)
                    row.update(iou_landmarks_only=round(iou(alone.garment, truth_mask), 3),
                               mae_landmarks_only=round(float(err[truth_mask].mean()), 2))
                rows.append(row)
    rows.append(raised_arm())
    return {'rows': rows, 'warp_ms_median': round(1000 * float(np.median(times)), 1),
            'cpu_ms_per_frame': {'pose_mask': round(1000 * float(np.median(cpu_mask)), 1),
                                 'warp_composite': round(1000 * float(np.median(cpu_warp)), 1)}}


def _between(follower, frame: np.ndarray, result: np.ndarray, mask: np.ndarray,
             matrix: np.ndarray, centre: tuple) -> dict:
    """
    Follow the frame after a posed one without posing it (live.between register).

    The posed frame is the try-on frame moved by matrix; the frame after it moves on by
    BETWEEN_STEP about the shoulders (one warp of the try-on frame by both moves); the truth
    is the same warp of the try-on. Returns the IoU and MAE (``*_between``) or the reason it
    would be posed.
    """
    x, scale, angle = BETWEEN_STEP
    step = cv2.getRotationMatrix2D(tuple(matrix @ (*centre, 1.0)), angle, scale)
    step[0, 2] += x
    total = np.vstack([step, (0, 0, 1)]) @ np.vstack([matrix, (0, 0, 1)])

    def move(im: np.ndarray, m: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(im, m, SIZE, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    live = follower.follow_between(move(frame, total[:2]))
    if live is None or not live.live:
        return {'status_between': 'posed instead' if live is None else live.status}
    truth, truth_mask = move(result, total[:2]), move(mask, total[:2]) > 127
    err = np.abs(live.image.astype(float) - truth.astype(float)).mean(-1)
    return {'status_between': live.status,
            'iou_between': round(iou(live.garment, truth_mask), 3),
            'mae_between': round(float(err[truth_mask].mean()), 2)}


def raised_arm() -> dict:
    """Raise the left arm of the unit tests' drawn figure by 50 degrees (its landmarks)."""
    sys.path.insert(0, str(ROOT / 'test'))
    import live_figures as drawn
    from vton_ros.media.live_warp import LiveFollower
    from vton_ros.media.registration import small_gray
    lms = drawn.figure_landmarks()
    frame, mask = drawn.scene(lms), drawn.upper_mask(lms)
    new = lms.copy()
    turn = cv2.getRotationMatrix2D(tuple(float(v) for v in lms[11, :2]), 50.0, 1.0)
    for i in (13, 15, 17, 19, 21):
        new[i, :2] = turn[:, :2] @ lms[i, :2] + turn[:, 2]
    follower = LiveFollower()
    follower.set_result(drawn.tried_on(frame, mask), mask, lms, 'upper', small_gray(frame))
    live = follower.follow(drawn.scene(new), drawn.upper_mask(new), new)
    truth = drawn.upper_mask(new) > 127
    return {'portrait': 'drawn figure', 'motion': 'raise left arm 50 deg',
            'status': live.status, 'iou': round(iou(live.garment, truth), 3),
            'iou_warped_mask': round(iou(live.warped_mask > 127, truth), 3)}


def _cpu_ms(fn, repeats: int) -> tuple[dict, object]:
    """Run fn repeatedly; return ({'median', 'min'} CPU ms of the process, its last value)."""
    times, value = [], None
    for _ in range(repeats):
        cpu = time.process_time()
        value = fn()
        times.append(1000 * (time.process_time() - cpu))
    return {'median': round(float(np.median(times)), 2), 'min': round(min(times), 2)}, value


def stages(repeats: int) -> dict:
    """Part 2: CPU ms per 640x480 frame of each stage of the worker, and the capacity."""
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from vton_ros.media import image_codec
    from vton_ros.media.live_warp import LiveFollower
    from vton_ros.media.registration import small_gray
    from vton_ros.nodes import image_conv
    from vton_ros.pipeline.masks import (create_mask_generator, overlay_mask,
                                         pose_agnostic_mask, PoseMaskGenerator)
    frames = walk_frames()
    ms = {}
    with create_mask_generator('pose') as masker:
        first = masker(frames[0])
        follower = LiveFollower()
        follower.set_result(striped_try_on(frames[0], first.mask), first.mask,
                            first.landmarks, 'upper', small_gray(frames[0]))
        frame = frames[3]  # 72 px from the try-on frame
        msg = image_conv.from_rgb(frame, Header())
        ms['image_conv.to_rgb'], _ = _cpu_ms(lambda: image_conv.to_rgb(msg), repeats)
        ms['pose_landmarks'], (lms, prob) = _cpu_ms(lambda: masker.detect(frame), repeats)
        with PoseMaskGenerator(masker.config, tracking=True) as tracker:  # between: track
            walk = iter(frames * repeats)  # consecutive frames of the walk, 24 px apart
            ms['pose_landmarks_tracking'], _ = _cpu_ms(lambda: tracker.detect(next(walk)),
                                                       repeats)
        ms['agnostic_mask'], mask = _cpu_ms(
            lambda: pose_agnostic_mask(lms, prob > masker.config.threshold, 'upper'), repeats)
        seen = masker(frame)
        ms['mask_publish_conv'], _ = _cpu_ms(
            lambda: image_conv.from_mono(seen.marked_mask(), Header()), repeats)
        ms['overlay'], over = _cpu_ms(lambda: overlay_mask(frame, seen.mask), repeats)
        ms['overlay_png'], _ = _cpu_ms(
            lambda: image_codec.encode(over, 'rgb8', 'png', 80, 3), repeats)
        ms['live_warp_composite'], live = _cpu_ms(
            lambda: follower.follow(frame, seen.mask, seen.landmarks), repeats)
        if not live.live:
            raise RuntimeError(f'the CPU part did not follow: {live.status}')
        ms['small_gray'], _ = _cpu_ms(lambda: small_gray(frame), repeats)
        ms['live_between'] = _between_cpu(follower, frame, seen, frames[4], repeats)
        ms['image_conv.from_rgb'], out = _cpu_ms(
            lambda: image_conv.from_rgb(live.image, Header()), repeats)
        ms['jpeg_encode'], _ = _cpu_ms(
            lambda: image_codec.encode(live.image, 'rgb8', 'jpeg', 80, 3), repeats)
    rclpy.init()
    try:
        node = rclpy.create_node('live_bench_publish')
        pub = node.create_publisher(Image, 'live_bench/live', 2)
        ms['publish'], _ = _cpu_ms(lambda: pub.publish(out), repeats)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    out_path = ('image_conv.from_rgb', 'jpeg_encode', 'publish')
    posed_path = ('image_conv.to_rgb', 'small_gray', 'pose_landmarks', 'agnostic_mask',
                  'live_warp_composite') + out_path
    between_path = ('image_conv.to_rgb', 'live_between') + out_path
    mask_extra = ('mask_publish_conv', 'overlay')
    figures = {'cpu_ms': ms}
    for key in ('median', 'min'):
        posed = sum(ms[k][key] for k in posed_path)
        between = sum(ms[k][key] for k in between_path)
        extra = sum(ms[k][key] for k in mask_extra)
        figures[f'posed_frame_ms_{key}'] = round(posed, 1)
        tracked = posed - ms['pose_landmarks'][key] + ms['pose_landmarks_tracking'][key]
        figures[f'posed_frame_ms_{key}_tracking'] = round(tracked, 1)
        figures[f'between_frame_ms_{key}'] = round(between, 1)
        figures[f'mask_frame_extra_ms_{key}'] = round(extra, 1)
        # the worker at the demo's rates: 15 live frames a second, 5 of them posed for masks
        second = 5 * (posed + extra) + 10 * between
        figures[f'worker_ms_per_second_15_live_5_masks_{key}'] = round(second, 1)
        figures[f'capacity_fps_all_posed_{key}'] = round(1000.0 / posed, 1)
        figures[f'capacity_fps_1_in_3_posed_{key}'] = round(15000.0 / second, 1)
    figures['posed_path'], figures['between_path'] = list(posed_path), list(between_path)
    figures['load_average_1_5_15'] = os.getloadavg()
    return figures


def _between_cpu(follower, posed: np.ndarray, seen, frame: np.ndarray, repeats: int) -> dict:
    """CPU ms of follow_between on frame, each time right after posed was followed."""
    times = []
    for _ in range(repeats):
        follower.follow(posed, seen.mask, seen.landmarks)
        cpu = time.process_time()
        live = follower.follow_between(frame)
        times.append(1000 * (time.process_time() - cpu))
        if live is None or not live.live:
            raise RuntimeError('the CPU part did not follow a frame between: '
                               f'{"posed instead" if live is None else live.status}')
    return {'median': round(float(np.median(times)), 2), 'min': round(min(times), 2)}


def walk_frames() -> list[np.ndarray]:
    """Return the camera replay's frames: the astronaut walking sideways."""
    base = portrait_frame('astronaut')
    return [cv2.warpAffine(base, np.float32([[1, 0, dx - 48], [0, 1, 0]]), SIZE,
                           borderMode=cv2.BORDER_REPLICATE) for dx in WALK]


def walk_folder(folder: Path) -> list[np.ndarray]:
    """Write the camera replay: the astronaut walking sideways (unmirrored frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = walk_frames()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f'{i:02d}.png'), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return frames


class Watch:
    """The bench's ROS node: tryon/live arrivals, latencies and a few frames."""

    def __init__(self, node, seg_pid: int | None = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage
        from std_msgs.msg import String
        from vton_ros.nodes.common import LATCHED_QOS
        self.lock = threading.Lock()
        self.seg_pid = seg_pid
        self.arrivals, self.latencies, self.kept, self.status = [], [], {}, []
        node.create_subscription(CompressedImage, 'tryon/live/compressed', self._live,
                                 qos_profile_sensor_data)
        node.create_subscription(String, 'tryon/live/status',
                                 lambda m: self.status.append(m.data), LATCHED_QOS)
        self.camera_hz: list[float] = []  # camera_node's own rate_hz on /diagnostics
        self.counts: dict[str, int] = {}  # segmentation_node's frame counts, latest
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diagnostics, 10)

    def _diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith('camera_node') and values.get('rate_hz'):
                with self.lock:
                    self.camera_hz.append(float(values['rate_hz']))
            if status.name.endswith('segmentation_node'):
                with self.lock:
                    self.counts.update((key, int(value)) for key, value in values.items()
                                       if key in COUNTS)

    def _live(self, msg) -> None:  # the JPEG the page shows (nobody asks for the raw one)
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.latencies.append(now - stamp)
            if len(self.kept) < 40:
                self.kept[len(self.kept)] = msg

    def window(self, seconds: float) -> dict:
        """Count arrivals for ``seconds``: fps (and the camera's), latency, node CPU, load."""
        with self.lock:
            n0, h0, counts0 = len(self.arrivals), len(self.camera_hz), dict(self.counts)
        cpu0 = _process_cpu(self.seg_pid)
        time.sleep(seconds)
        cpu1 = _process_cpu(self.seg_pid)
        with self.lock:
            lat = self.latencies[n0:]
            n = len(self.arrivals) - n0
            camera = self.camera_hz[h0:]
            counts = {key: value - counts0.get(key, 0) for key, value in self.counts.items()}
        figures = {
            'fps': round(n / seconds, 2),
            'camera_fps': round(float(np.median(camera)), 2) if camera else None,
            'latency_ms_median': round(1000 * float(np.median(lat)), 1) if lat else None,
            'latency_ms_p90': round(1000 * float(np.percentile(lat, 90)), 1) if lat else None,
            'frames': counts,  # of segmentation_node over the window (diagnostics, 1 Hz)
            'load_average_1_5_15': os.getloadavg()}
        if cpu0 is not None and cpu1 is not None:
            used = cpu1 - cpu0  # segmentation_node's CPU seconds, all of its threads
            figures['segmentation_node_cpu_share'] = round(used / seconds, 2)
            if n:
                figures['segmentation_node_cpu_ms_per_live_frame'] = round(1000 * used / n, 1)
        return figures


def _process_cpu(pid: int | None) -> float | None:
    """Return the CPU seconds (user + system) a process used so far, None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _find_node(parent: int, name: str, timeout: float = 120.0) -> int | None:
    """Return the pid of the child of ``parent`` whose command line names ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path('/proc').iterdir():
            try:
                if proc.name.isdigit() and name.encode() in (proc / 'cmdline').read_bytes() \
                        and int((proc / 'stat').read_text().rsplit(')', 1)[1].split()[1]) \
                        == parent:
                    return int(proc.name)
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.5)
    return None


def topic(args: argparse.Namespace, out: Path) -> tuple[dict, list]:
    """Part 2: the live topic of the demo stack at 640x480."""
    import rclpy
    from rclpy.action import ActionClient
    from vton_interfaces.action import TryOn
    frames = walk_folder(out / 'walk')
    domain = random.SystemRandom().randint(1, 200)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    log = open(out / 'stack.log', 'w')
    stack = subprocess.Popen(
        ['tryon_bringup', '--profile', 'cpu,demo', '--camera-source', str(out / 'walk'),
         '--set', 'camera.fps=15.0', '--set', f'camera.width={SIZE[0]}',
         '--set', f'camera.height={SIZE[1]}', '--set', 'segmentation.max_rate=5.0',  # mirror
         '--set', f'catvton.num_inference_steps={args.steps}',
         '--set', 'tryon.prerender=off']  # idle means idle: no shelf rendered meanwhile
        + [arg for item in args.set for arg in ('--set', item)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node('live_bench')
    watch = Watch(node, _find_node(stack.pid, 'segmentation_node'))
    spin = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spin.start()
    try:
        client = ActionClient(node, TryOn, 'tryon')
        if not client.wait_for_server(timeout_sec=600.0):
            raise RuntimeError('tryon_server did not come up; see stack.log')
        first = _try_on(client, TryOn, 2)  # a quick one to follow
        deadline = time.monotonic() + 120.0
        while 'live' not in watch.status and time.monotonic() < deadline:
            time.sleep(0.2)
        figures = {'first_try_on': first, 'idle': watch.window(args.seconds)}
        stop, runs = threading.Event(), []

        def busy() -> None:  # try-ons back to back for the whole window
            while not stop.is_set():
                runs.append(_try_on(client, TryOn, args.steps))
        worker = threading.Thread(target=busy, daemon=True)
        worker.start()
        time.sleep(1.0)  # the first goal is running
        figures['during_try_on'] = watch.window(args.seconds)
        stop.set()
        worker.join(600.0)
        figures['try_ons_during_window'] = runs
        figures['statuses_seen'] = sorted(set(watch.status))
        strip = _strip(watch, frames)
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        figures_code = stack.wait(120)
        node.destroy_node()
        rclpy.shutdown()
        log.close()
    figures['stack_exit_code'] = figures_code
    return figures, strip


def _try_on(client, action, steps: int) -> str:
    goal = action.Goal(garment_id='', num_inference_steps=steps)
    ids = sorted(p.stem for p in (ROOT / 'garments').glob('*.png'))
    goal.garment_id = ids[0]
    handle = _wait(client.send_goal_async(goal))
    if not handle.accepted:
        return 'rejected'
    result = _wait(handle.get_result_async()).result
    return 'ok' if result.error_code == 0 else result.message


def _wait(future, timeout: float = 600.0):
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return future.result()


def _strip(watch: Watch, frames: list[np.ndarray]) -> list:
    """Pick live frames at distinct walk positions: (raw frame, composite) pairs."""
    mirrored = [f[:, ::-1] for f in frames]  # the demo profile's camera mirrors
    pairs = {}
    with watch.lock:
        kept = list(watch.kept.values())
    for msg in kept:
        live = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8),
                                         cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        errs = [np.median(np.abs(live.astype(int) - f).max(-1)) for f in mirrored]
        index = int(np.argmin(errs))
        pairs.setdefault(WALK[index], (mirrored[index], live))
    return [pairs[k] for k in sorted(pairs)][:5]


def write_strip(pairs: list, path: Path) -> None:
    """Write raw camera frames above, live composites below, at 256x192."""
    tile = (256, 192)
    cols = [np.vstack([cv2.resize(a, tile, interpolation=cv2.INTER_AREA),
                       cv2.resize(b, tile, interpolation=cv2.INTER_AREA)]) for a, b in pairs]
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(cols), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {'accuracy': accuracy(), 'cpu_per_stage': stages(args.repeats)}
    if not args.no_ros:
        results['live_topic'], pairs = topic(args, out)
        results['live_topic']['extra_settings'] = args.set
        if pairs:
            write_strip(pairs, out / 'live_strip.png')
            if args.strip:
                write_strip(pairs, Path(args.strip))
    results['load_average_1_5_15'] = os.getloadavg()
    (out / 'bench.json').write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
