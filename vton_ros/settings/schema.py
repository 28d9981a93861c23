"""
The one schema of every vton_ros setting.

Node parameters (names, defaults, ParameterDescriptor ranges and read_only), the YAML files
in config/ (read by :mod:`vton_ros.settings.files`), command-line overrides and the typed
configs of :mod:`vton_ros.settings.views` are all derived from :data:`SCHEMA`. Names follow
``<component>.<field>`` with diffusers' field names where one exists. This module has no ROS
import: nodes turn a :class:`Param` into a descriptor in ``vton_ros.nodes.common``.
"""

import difflib
from typing import Any, Iterable, Mapping

from vton_ros.settings.choices import (ATTENTION_SLICINGS, ATTN_VERSIONS, BACKENDS,
                                       BUSY_POLICIES, CLOTH_TYPES, DECODERS, ENCODERS,
                                       FRAMINGS, LIVE_BETWEEN, MASK_BACKENDS, MAX_STEPS,
                                       OFFLOAD_MODES, PRECISIONS, PRERENDER_MODES,
                                       PREVIEW_DECODERS, SCHEDULERS, SDPA_BACKENDS)
from vton_ros.settings.param import Param

NODES = ('camera_node', 'segmentation_node', 'tryon_server', 'mirror_ui', 'metrics_exporter')
SEGMENTATION_CONSUMERS = ('segmentation_node', 'tryon_server')


_CAM = ('camera_node',)
_SEG = SEGMENTATION_CONSUMERS
_TRY = ('tryon_server',)
_ALL = NODES
_MANAGED = ('camera_node', 'segmentation_node', 'tryon_server')  # lifecycle nodes
_LIVE = ('segmentation_node', 'tryon_server')  # live follow's limits (and prerender's)

SCHEMA: tuple[Param, ...] = (
    # camera_node
    Param('camera.source', 'sample:astronaut',
          'V4L2 index (0) or device path (/dev/video0), GStreamer pipeline (contains "!"), '
          'video file, folder of images, single image, or sample:astronaut | '
          'sample:grace_hopper (bundled portraits)', _CAM, read_only=True),
    Param('camera.fps', 10.0, 'Publish rate in Hz', _CAM, min=0.1, max=120.0),
    Param('camera.width', 0, 'Output width in pixels (0 = source width)', _CAM, min=0, max=8192),
    Param('camera.height', 0, 'Output height in pixels (0 = source height)', _CAM,
          min=0, max=8192),
    Param('camera.mirror', True, 'Flip horizontally (it is a mirror)', _CAM),
    Param('camera.loop', True, 'Replay a video file or image folder from the start at its end',
          _CAM, read_only=True),
    Param('camera.frame_id', 'camera', 'frame_id of image_raw and camera_info', _CAM,
          read_only=True),
    Param('camera.calibration_file', '', 'camera_info K/D/R/P from a camera_info_manager '
          'YAML (camera_calibration ost.yaml), scaled to the published size; empty: an '
          'ideal pinhole from camera.hfov_deg', _CAM, read_only=True),
    Param('camera.hfov_deg', 60.0, 'Horizontal field of view (degrees) of the ideal pinhole '
          'camera_info describes when camera.calibration_file is empty', _CAM,
          min=1.0, max=179.0),
    Param('camera.encoding', 'rgb8', 'Encoding of image_raw', _CAM, choices=('rgb8', 'bgr8')),
    Param('camera.max_backoff', 10.0, 'Longest wait in seconds between reconnect attempts',
          _CAM, min=0.1, max=600.0),
    # segmentation (segmentation_node; tryon_server for goals with a person but no mask)
    Param('segmentation.backend', 'pose', 'Mask generator: unet (trained U-Net ResNet-50) or '
          'pose (mediapipe landmarks, no checkpoint needed)', _SEG, choices=MASK_BACKENDS,
          read_only=True),
    Param('segmentation.checkpoint', '', 'U-Net checkpoint file (train_segmentation best.pt); '
          'required for backend unet', _SEG, read_only=True),
    Param('segmentation.threshold', 0.5, 'Probability above which a pixel is masked (unet: '
          'mask model, pose: person segmentation)', _SEG, min=0.01, max=0.99),
    Param('segmentation.cloth_type', 'upper', 'Garment region of the live masks (tryon_server '
          'and mirror_ui reuse a camera mask only for goals of this type)',
          _SEG + ('mirror_ui',), choices=CLOTH_TYPES,
          read_only=True),
    Param('segmentation.device', 'auto', 'cpu | cuda | cuda:N | auto', _SEG, read_only=True),
    Param('segmentation.precision', 'fp32', 'Mask model precision', _SEG, choices=PRECISIONS,
          read_only=True),
    Param('segmentation.max_rate', 5.0, 'Most masks per second (0 = as fast as possible)',
          ('segmentation_node',), min=0.0, max=120.0),
    # live follow (segmentation_node follows the last try-on, see vton_ros.media.live_warp)
    Param('live.enabled', False, 'segmentation_node: keep the last try-on on the moving '
          'shopper (tryon/live, pose backend only); mirror_ui: the Live toggle starts on',
          ('segmentation_node', 'mirror_ui')),
    Param('live.rerender', False, 'When the pose moved too far for the warp (or the shopper '
          'turned away), render the garment again from the current frame instead of '
          'returning to the plain camera view', ('mirror_ui',)),
    Param('live.min_visibility', 0.5, 'Landmarks below this visibility are not used; '
          'shoulders (upper) or hips (lower) below it mean the shopper turned away',
          _LIVE, min=0.0, max=1.0),
    Param('live.max_displacement', 1.2, 'Most a body point may move beyond the global move, '
          'in shoulder widths, before the warp is not believable', _LIVE,
          min=0.05, max=10.0),
    Param('live.max_scale', 1.4, 'Most the shopper may grow or shrink (either way) since the '
          'try-on frame', _LIVE, min=1.0, max=4.0),
    Param('live.max_rotation', 30.0, 'Most the shopper may lean (degrees) since the try-on '
          'frame', _LIVE, min=1.0, max=180.0),
    Param('live.min_width_ratio', 0.6, 'Shoulder width (scale-corrected) below this share of '
          "the try-on frame's means the shopper turned sideways", _LIVE,
          min=0.0, max=0.99),
    Param('live.max_rate', 15.0, 'Most live composites per second while a try-on is '
          'followed: frames are then taken at this rate (0 = every frame; live.between), '
          'agnostic_mask and mask_overlay stay at segmentation.max_rate',
          ('segmentation_node',), min=0.0, max=120.0),
    Param('live.between', 'register', 'The live frames between masks: register (moved by '
          'their registration on the last posed frame; posed if it fails), pose (mediapipe '
          'on each) or track (posed by a second mediapipe graph in its tracking mode); the '
          'published masks are always detected per image', ('segmentation_node',),
          choices=LIVE_BETWEEN),
    Param('live.feather', 0.03, 'Outward feather of the composite, in shoulder widths',
          ('segmentation_node',), min=0.0, max=0.5),
    Param('live.forget_after', 5.0, 'Seconds without a person after which the followed '
          'try-on is dropped', _LIVE, min=0.1, max=3600.0),
    # catvton (tryon_server)
    Param('catvton.base_model', 'booksforcharlie/stable-diffusion-inpainting',
          'SD1.5 inpainting base: hub id or local folder with unet/ and scheduler/', _TRY,
          read_only=True),
    Param('catvton.vae', 'stabilityai/sd-vae-ft-mse', 'VAE: hub id or local folder', _TRY,
          read_only=True),
    Param('catvton.attn_ckpt', 'zhengchong/CatVTON',
          'CatVTON attention weights: hub id or local folder', _TRY, read_only=True),
    Param('catvton.attn_version', 'auto', 'Attention weights version; auto picks per goal: '
          'vitonhd (upper) or dresscode (lower, overall) at 512-class sizes, mix at 1024-class '
          'sizes (long side >= 768); each set is loaded once', _TRY,
          choices=('auto',) + ATTN_VERSIONS, read_only=True),
    Param('catvton.device', 'auto', 'cpu | cuda | cuda:N | auto', _TRY, read_only=True),
    Param('catvton.precision', 'auto', 'Model precision (auto: bf16/fp16 on CUDA, fp32 on CPU)',
          _TRY, choices=PRECISIONS, read_only=True),
    Param('catvton.height', 512, 'Try-on height in pixels', _TRY, min=64, max=4096,
          multiple_of=8),
    Param('catvton.width', 384, 'Try-on width in pixels', _TRY, min=48, max=4096,
          multiple_of=8),
    Param('catvton.scheduler', 'dpmpp_2m', 'Denoising scheduler (takes effect on the next goal)',
          _TRY, choices=SCHEDULERS),
    Param('catvton.num_inference_steps', 10, 'Denoising steps (default when a goal gives 0)',
          _TRY, min=1, max=MAX_STEPS),
    Param('catvton.guidance_scale', 2.5, 'Classifier-free guidance (1 = off)', _TRY,
          min=0.0, max=50.0),
    Param('catvton.attention_slicing', 'none', 'Compute self-attention in slices (less '
          'memory): none, auto (half the heads per slice, the paper) or max (one head)', _TRY,
          choices=ATTENTION_SLICINGS, read_only=True),
    Param('catvton.vae_slicing', False, 'Decode/encode the VAE batch one image at a time',
          _TRY, read_only=True),
    Param('catvton.vae_tiling', False, 'Tile the VAE (large images, less memory)', _TRY,
          read_only=True),
    Param('catvton.gpu_memory_fraction', 1.0, 'Cap on the CUDA memory this process may use '
          '(0.85 in the paper)', _TRY, min=0.05, max=1.0, read_only=True),
    Param('catvton.cudnn_benchmark', False, 'Let cuDNN pick the fastest kernels', _TRY,
          read_only=True),
    Param('catvton.channels_last', False, 'channels_last memory format for UNet and VAE',
          _TRY, read_only=True),
    Param('catvton.compile_unet', False, 'torch.compile the UNet (slow first goal)', _TRY,
          read_only=True),
    Param('catvton.allow_download', False, 'Let a hub id missing from the Hugging Face cache '
          'be downloaded at start-up (off: only cached or local weights; see fetch_weights)',
          _TRY, read_only=True),
    Param('catvton.seed', -1, 'Noise seed when a goal gives none (negative = random)', _TRY,
          min=-1, max=2 ** 63 - 1),
    Param('catvton.safety_checker', False, 'Run the SD safety checker on results', _TRY,
          read_only=True),
    Param('catvton.repaint', False, 'Blend the result into the person outside the mask', _TRY),
    Param('catvton.mask_blur', 0.0, 'Gaussian blur (sigma in try-on pixels) of the mask '
          'before it is thresholded: rounder mask edges; 0 = off, the upstream app uses 9 at '
          '1024x768', _TRY, min=0.0, max=64.0),
    Param('catvton.framing', 'person', 'Box of the person frame the model sees: person (the '
          "person's box with a margin, at the model's aspect, padded where the frame is too "
          'small; the result goes back inside the mask, so the whole garment shows wherever '
          "the person stands) or centre (the paper's centre crop; a mask past it is cut off)",
          _TRY, choices=FRAMINGS),
    Param('catvton.guidance_start', 0.0, 'Guidance only from this fraction of the steps on '
          '(UNet batch 1 before it; 0 = from the first step, the paper)', _TRY,
          min=0.0, max=1.0),
    Param('catvton.guidance_end', 1.0, 'Guidance only before this fraction of the steps '
          '(UNet batch 1 after it; 1 = to the last step, the paper); >= guidance_start',
          _TRY, min=0.0, max=1.0),
    Param('catvton.cache_interval', 1, 'DeepCache: full UNet every N steps, shallow steps '
          'reusing its deep features in between (1 = off, the paper)', _TRY, min=1, max=100),
    Param('catvton.cache_branch', 0, 'DeepCache: skip connections recomputed on shallow '
          'steps beyond conv_in (0 = shallowest, ~9 % of the UNet; SD1.5: 0-11)', _TRY,
          min=0, max=11),
    Param('catvton.decoder', 'full', 'Final decode: full VAE (the paper) or tiny (TAESD, '
          'approximate, ~20x cheaper)', _TRY, choices=DECODERS, read_only=True),
    Param('catvton.preview_decoder', 'latent', 'Feedback previews: latent colours (latent '
          'size) or tiny (TAESD images at twice the latent size)', _TRY,
          choices=PREVIEW_DECODERS, read_only=True),
    Param('catvton.tiny_vae', 'madebyollin/taesd', 'Tiny decoder (AutoencoderTiny, TAESD '
          'layout): hub id or local folder; loaded only when a decoder is tiny', _TRY,
          read_only=True),
    Param('catvton.offload', 'none', 'Weights out of memory between uses: none, model (one '
          'model on the GPU at a time; no-op on CPU) or sequential (layer by layer; on CPU '
          'streamed from a temporary file)', _TRY, choices=OFFLOAD_MODES,
          read_only=True),
    Param('catvton.sdpa_backend', 'auto', 'Attention kernel: auto (torch picks), flash, '
          'efficient (CUDA) or math', _TRY, choices=SDPA_BACKENDS,
          read_only=True),
    Param('catvton.encoder', 'full', 'Person and garment latents: full VAE encoder (the '
          'paper) or tiny (TAESD encoder, approximate, ~10x cheaper)', _TRY,
          choices=ENCODERS, read_only=True),
    Param('catvton.backend', 'torch', 'Model forwards: torch (the models in PyTorch) or '
          'onnxruntime (the graphs export_onnx wrote to catvton.onnx_dir; TensorRT on a '
          'Jetson)', _TRY, choices=BACKENDS, read_only=True),
    Param('catvton.onnx_dir', '', 'Folder of an export_onnx export (backend onnxruntime); it '
          'must fit the size, precision, attention version and weights', _TRY,
          read_only=True),
    Param('catvton.onnx_providers', 'cpu', 'onnxruntime providers, comma-separated, first '
          'preferred: cpu, cuda, tensorrt (engines cached in <onnx_dir>/trt_engines)', _TRY,
          read_only=True),
    # tryon_server
    Param('tryon.preview_every', 1, 'Send a preview image with every Nth feedback '
          '(0 = never)', _TRY, min=0, max=1000),
    Param('tryon.busy_policy', 'reject', 'A goal arriving while one runs: reject it, queue '
          'it, or preempt (cancel) the running one', _TRY, choices=BUSY_POLICIES),
    Param('tryon.queue_size', 4, 'Most goals waiting with busy_policy queue', _TRY,
          min=1, max=100),
    Param('tryon.pair_max_age', 10.0, 'Oldest camera frame+mask pair (seconds) a goal '
          'without a person image may use (mirror_ui: the oldest frame a tap dresses)',
          _TRY + ('mirror_ui',), min=0.1, max=3600.0),
    Param('tryon.pair_wait', 10.0, 'Seconds a goal without a person image waits for the '
          'first camera frame+mask pair before it is aborted', _TRY, min=0.0, max=600.0),
    Param('tryon.goal_timeout', 0.0, 'Seconds a goal may run (from its start, not its wait in '
          'the queue) before it is aborted with TIMED_OUT (0 = no limit)', _TRY,
          min=0.0, max=86400.0),
    Param('tryon.result_timeout', 900.0, 'Seconds the result of a finished goal stays '
          'available to a late result request (the rclpy default, 10 s, answers a slow '
          'client UNKNOWN)',
          _TRY, min=1.0, max=86400.0, read_only=True),
    Param('tryon.action_depth', 0, 'Goal, cancel and result requests the action server '
          'holds while busy (0 = all: a burst of goals is never dropped unanswered)', _TRY,
          min=0, max=100000, read_only=True),
    Param('tryon.stop_orphaned_goals', True, 'Stop a running or queued goal with CLIENT_GONE '
          'once no action client that may have sent it is left in the ROS graph (off: goals '
          'of clients that exited run to their end)', _TRY),
    Param('tryon.min_image_side', 32, 'Smallest width and height (pixels) of a goal image '
          '(person, mask, garment); smaller ones are INVALID_IMAGE', _TRY, min=1, max=4096),
    Param('tryon.max_aspect_ratio', 4.0, 'Most a goal image may be elongated: long side / '
          'short side (INVALID_IMAGE beyond)', _TRY, min=1.0, max=1000.0),
    Param('tryon.save_dir', '', 'Private folder (0700, files 0600) to save results in (empty '
          '= never write images)', _TRY, read_only=True),
    Param('tryon.prerender', 'off', 'While a person stands in view and no goal runs, render '
          'garments for the current frame in the background (preempted by any goal within '
          'a denoising step; a tap on a ready garment is answered at once): off, shelf (the '
          'first tryon.prerender_shelf garments) or catalogue (all, at most 64)', _TRY,
          choices=PRERENDER_MODES),
    Param('tryon.prerender_shelf', 6, 'Garments (the first ones in the catalogue order, as the '
          'page lists them) that tryon.prerender shelf renders', _TRY, min=1, max=500),
    Param('tryon.max_image_pixels', 4096 * 4096, 'Largest goal image accepted (pixels)', _TRY,
          min=1, max=2 ** 31 - 1),
    Param('garments.catalog_dir', '', 'Folder of garment images (id = file stem), optional '
          'catalog.yaml mapping id -> cloth_type', _TRY + ('mirror_ui',), read_only=True),
    # mirror_ui (the kiosk page)
    Param('ui.host', '127.0.0.1', 'Address the mirror page is served on (a non-loopback one '
          'needs an access token: ui.token_file)', ('mirror_ui',), read_only=True),
    Param('ui.port', 8080, 'TCP port of the mirror page (0 = any free port, logged)',
          ('mirror_ui',), min=0, max=65535, read_only=True),
    Param('ui.token_file', '', 'File whose first line is the access token every page request '
          'must carry (open the page once with ?token=...; a cookie keeps it); empty = the '
          'VTON_MIRROR_TOKEN environment variable, or no token. Required when ui.host is not '
          'loopback. The token itself is never a parameter: any DDS peer may read those',
          ('mirror_ui',), read_only=True),
    Param('ui.timeout', 10.0, 'Seconds a connection of the page may take to send a complete '
          'request or an upload, or stay idle between two requests, before it is closed',
          ('mirror_ui',), min=1.0, max=3600.0, read_only=True),
    Param('ui.max_connections', 64, 'Open connections of the page server at most (more are '
          'refused with 503)', ('mirror_ui',), min=4, max=4096, read_only=True),
    Param('ui.max_connections_per_address', 16, 'Open connections from one client address '
          'at most (a browser opens up to 7 to a page)', ('mirror_ui',), min=2, max=4096,
          read_only=True),
    Param('ui.jpeg_quality', 80, 'JPEG quality of the live view, previews and results',
          ('mirror_ui',), min=10, max=100),
    Param('ui.max_side', 640, 'Longest side in pixels of the live frames sent to the page '
          '(0 = as the camera sends them)', ('mirror_ui',), min=0, max=8192),
    Param('ui.idle_reset', 20.0, 'Seconds without a person in view (no mask pixels) and '
          'without a tap after which every page forgets its result, frozen frame and '
          'uploads and shows the live view', ('mirror_ui',), min=1.0, max=86400.0),
    Param('ui.answer_timeout', 60.0, 'Seconds a page waits for the try-on server (the '
          "goal's acceptance, then each feedback or the result) before it ends the try-on "
          'with a message', ('mirror_ui',), min=1.0, max=3600.0),
    Param('ui.max_upload_bytes', 8 * 1024 * 1024, 'Largest garment photo a shopper may upload '
          '(bytes)', ('mirror_ui',), min=1024, max=256 * 1024 * 1024, read_only=True),
    # managed (lifecycle) nodes
    Param('lifecycle.autostart', True, 'Configure and activate at start; false leaves the node '
          'unconfigured for a lifecycle manager (ros2 lifecycle, nav2_lifecycle_manager)',
          _MANAGED, read_only=True),
    # <topic>/compressed image topics (image_transport's compressed conventions)
    Param('compressed.jpeg_quality', 80, 'JPEG quality of image_raw/compressed and '
          'tryon/result/compressed', _MANAGED, min=1, max=100),
    Param('compressed.png_level', 3, 'PNG compression level (0-9) of mask_overlay/compressed',
          _MANAGED, min=0, max=9),
    # metrics_exporter (tryon_bringup --metrics-port, launch metrics_port:=; the page serves
    # /metrics itself)
    Param('metrics.host', '127.0.0.1', 'Address the Prometheus /metrics endpoint is served on '
          '(loopback: a scraper on this machine; another address opens it to that network)',
          ('metrics_exporter',), read_only=True),
    Param('metrics.port', 9477, 'TCP port of /metrics (0 = any free port, logged)',
          ('metrics_exporter',), min=0, max=65535, read_only=True),
    # every node
    Param('qos.depth', 2, 'Image topic queue depth', _ALL, min=1, max=100, read_only=True),
    Param('qos.reliability', 'best_effort', 'Image topic reliability (sensor-data QoS is '
          'best_effort)', _ALL, choices=('best_effort', 'reliable'), read_only=True),
    Param('diagnostics.period', 1.0, 'Seconds between /diagnostics messages', _ALL,
          min=0.1, max=60.0, read_only=True),
)

_BY_NAME = {p.name: p for p in SCHEMA}


def param(name: str) -> Param:
    """Look up a parameter by name; unknown names raise ValueError naming close ones."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f'empty setting name {name!r}: give <component>.<field>, e.g. '
                         'catvton.num_inference_steps')
    try:
        return _BY_NAME[name]
    except KeyError:
        near = close_names(name)
        hint = (f'did you mean {" or ".join(near)}?' if near else
                'the settings are listed in config/tryon.yaml and the README')
        raise ValueError(f'unknown setting {name!r}; {hint}') from None


def close_names(name: str, most: int = 3) -> list[str]:
    """
    Return up to ``most`` settings close to a mistyped ``name``, the closest first.

    The field is compared within the same (or a close) component, so the shared
    ``catvton.`` prefix does not make unrelated fields look alike; a field that starts
    with the typed text counts as close. Only names near the best one are kept.
    """
    component, _, field = name.rpartition('.')
    scores = {}
    for known in _BY_NAME:
        group, _, known_field = known.partition('.')
        if component and difflib.SequenceMatcher(None, component, group).ratio() < 0.8:
            continue
        score = difflib.SequenceMatcher(None, field, known_field).ratio()
        if len(field) >= 3 and known_field.startswith(field):
            score = max(score, 0.8)
        scores[known] = score
    ranked = sorted(scores, key=lambda n: (-scores[n], n))
    best = scores[ranked[0]] if ranked else 0.0
    return [n for n in ranked[:most] if scores[n] >= max(0.6, best - 0.1)]


ROS_PARAMETERS = ('use_sim_time', 'start_type_description_service')  # rclpy's own
ROS_PARAMETER_PREFIXES = ('qos_overrides.',)


def check_given(names: Iterable[str]) -> list[str]:
    """
    Check the parameters given to a node (params file, ``-p``); return the foreign ones.

    rclpy ignores overrides no node declares, so a typo in a file that ``ros2 launch`` or
    ``ros2 run --params-file`` passes would go unnoticed: a name in one of our components
    (``catvton.gudance_scale``) that is no setting raises ValueError with close matches.
    Settings of our other nodes and rclpy's own parameters are fine (one file with ``/**``
    sections may serve all nodes); names outside our components (another package's, in a
    shared file) are returned, for a warning.
    """
    components = {p.name.split('.', 1)[0] for p in SCHEMA}
    foreign = []
    for name in names:
        if name in _BY_NAME or name in ROS_PARAMETERS or name.startswith(ROS_PARAMETER_PREFIXES):
            continue
        if name.split('.', 1)[0] in components:
            param(name)  # raises, naming the close settings
        foreign.append(name)
    return foreign


def params_for(node: str) -> tuple[Param, ...]:
    """Return the parameters a node declares."""
    if node not in NODES:
        raise ValueError(f'unknown node {node!r}; valid: {", ".join(NODES)}')
    return tuple(p for p in SCHEMA if node in p.nodes)


def defaults(node: str) -> dict[str, Any]:
    """Return the default values of a node's parameters."""
    return {p.name: p.default for p in params_for(node)}


def validate(node: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check values against the schema for ``node``: unknown keys and bad values raise."""
    known = {p.name for p in params_for(node)}
    out = {}
    for name, value in values.items():
        p = param(name)
        if name not in known:
            raise ValueError(f'{name} is not a parameter of {node} (it belongs to '
                             f'{", ".join(p.nodes)})')
        out[name] = p.validate(value)
    return out
