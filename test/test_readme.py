"""
README.md's code blocks: each command runs as written after `make setup`, or is marked.

A trailing comment marks what a command needs beyond this machine (`# needs ROS 2`,
`# needs real weights`, `# needs CUDA`) or that it runs long (`# takes ...`); the marks
must match the command (a ROS command is marked, a marked command is one). The test runs
every unmarked command in a folder laid out like the checkout (the server of a block in the
background while its `# in a second shell` client runs), checks the arguments of the marked
ones against the tool's own parser, and `make -n` for make targets.
"""

from dataclasses import dataclass
import importlib
import importlib.util
import re
import shlex
import subprocess

import pytest

from rosutil import free_domain_id, HANG_GUARD, Proc, ROOT, ros_env
from vton_ros.settings import stack as param_stack

README = ROOT / 'README.md'
NEEDS = ('ROS 2', 'real weights', 'CUDA')  # `# needs ROS 2, real weights, CUDA`
MARKS = tuple(f'needs {need}' for need in NEEDS) + ('takes ',)
LAYOUT = ('scripts', 'config', 'garments', 'models', 'install', '.venv')
NATIVE_LINES = ('W0000', 'TensorFlow Lite', 'absl::InitializeLog', 'Traceback')


@dataclass
class Command:
    """One command line of a bash block and its trailing comment."""

    text: str
    note: str

    @property
    def marked(self) -> bool:
        """Tell whether a mark says the command is not run here."""
        return bool(self.needs) or self.note.startswith('takes ')

    @property
    def needs(self) -> set[str]:
        """Return what the note says is needed: ``# needs A, B and C``."""
        if not self.note.startswith('needs '):
            return set()
        return {need for need in NEEDS if need in self.note}

    def profiles(self) -> tuple[str, ...] | None:
        """Return the profiles a launch or tryon_bringup applies (None: neither command)."""
        words = self.text.split()
        given = [w.split(':=', 1)[1] for w in words if w.startswith('profile:=')]
        if words[0] == 'tryon_bringup' and '--profile' in words:
            given = [words[words.index('--profile') + 1]]
        if words[:3] != ['ros2', 'launch', 'vton_ros'] and words[0] != 'tryon_bringup':
            return None
        return param_stack.parse_profiles(given[0] if given else param_stack.DEFAULT_PROFILE)

    def needs_ros(self) -> bool:
        """Tell whether the command uses ROS 2 tools the PyPI wheels lack."""
        return (self.text.split()[0] in ('ros2', 'rviz2', 'colcon')
                or any(s in self.text for s in ('/opt/ros', 'ros2_ws', 'install/setup.bash')))

    def needs_weights(self) -> bool:
        """Tell whether the command needs the real CatVTON weights."""
        words = self.text.split()
        profiles = self.profiles()
        return ('WEIGHTS=real' in words
                or (profiles is not None and 'demo' not in profiles)
                or (words[0] == 'vton_bench' and '--random-weights' not in words
                    and 'models/demo/base' not in words)
                or words[0] == 'export_onnx')  # config/tryon.yaml's weights

    def needs_cuda(self) -> bool:
        """Tell whether the command asks for a CUDA device (a stack without a CPU profile)."""
        profiles = self.profiles()
        return 'cuda' in self.text or (profiles is not None
                                       and not {'cpu', 'fast_cpu'} & set(profiles))

    def parser(self):
        """Return the argument parser of the vton_ros command it runs (cli, tools), or None."""
        name = self.text.split()[0]
        if not re.fullmatch(r'\w+', name):
            return None
        for package in ('cli', 'tools'):
            if importlib.util.find_spec(f'vton_ros.{package}.{name}') is not None:
                module = importlib.import_module(f'vton_ros.{package}.{name}')
                return getattr(module, 'build_parser', lambda: None)()
        return None


def blocks() -> list[list[Command]]:
    """Return the commands of every ```bash block of the README."""
    out = []
    for body in re.findall(r'```bash\n(.*?)```', README.read_text(), re.S):
        commands = []
        for line in body.replace('\\\n', ' ').splitlines():
            parts = re.split(r'\s+#\s', line, maxsplit=1)
            text, note = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else '')
            if text:
                commands.append(Command(text, note))
        out.append(commands)
    return out


ALL = [c for block in blocks() for c in block]


def test_readme_has_commands_and_explains_marks_and_the_skipped_test():
    assert len(ALL) > 20
    text = ' '.join(README.read_text().split())
    for mark in MARKS:
        assert f'`# {mark.strip()}' in text, mark  # the legend
    assert '`test/test_launch.py` starts the real `ros2 launch` and skips itself here' in text


@pytest.mark.parametrize('command', ALL, ids=lambda c: c.text[:60])
def test_every_command_is_marked_for_what_it_needs(command):
    assert command.needs_ros() == ('ROS 2' in command.needs), command
    assert command.needs_weights() == ('real weights' in command.needs), command
    assert command.needs_cuda() == ('CUDA' in command.needs), command


@pytest.mark.parametrize('command', [c for c in ALL if c.marked and (
    c.text.startswith('make ') or c.parser() is not None)], ids=lambda c: c.text[:60])
def test_marked_commands_have_valid_arguments(command):
    argv = shlex.split(command.text)
    if argv[0] == 'make':
        done = subprocess.run(['make', '-n', *argv[1:]], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return
    command.parser().parse_args(argv[1:])  # SystemExit on a wrong argument


@pytest.fixture()
def checkout(tmp_path):
    """Return a folder laid out like the checkout, of links: outputs stay out of it."""
    for name in LAYOUT:
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def shell(commands: list[str], line: str) -> list[str]:
    """Return argv running ``line`` in bash after the block's earlier ``source`` lines."""
    return ['bash', '-c', ' && '.join(commands + [line])]


@pytest.mark.stack
@pytest.mark.parametrize('index', [i for i, block in enumerate(blocks())
                                   if any(not c.marked for c in block)])
def test_unmarked_commands_run_as_written(index, checkout):
    block = blocks()[index]
    env = ros_env(free_domain_id())
    sources: list[str] = []
    server = None
    try:
        for i, command in enumerate(block):
            if command.marked:
                continue
            if command.text.startswith('source '):
                sources.append(command.text)
                continue
            if i + 1 < len(block) and 'in a second shell' in block[i + 1].note:
                server = Proc(shell(sources, command.text), env, checkout / f'server{i}.log',
                              cwd=checkout)
                server.wait_for_log('model loaded', timeout=HANG_GUARD)
                continue
            run = subprocess.run(shell(sources, command.text), env=env, cwd=checkout,
                                 capture_output=True, text=True, timeout=HANG_GUARD)
            assert run.returncode == 0, (command.text, run.stdout, run.stderr)
            if server is not None:  # the client of the server above
                check_client(run.stdout, run.stderr, checkout)
                code, server = server.stop(timeout=120), None
                log = (checkout / f'server{i - 1}.log').read_text()
                assert code == 0, log
                assert not [s for s in NATIVE_LINES if s in log], log  # quiet by default
    finally:
        if server is not None:  # a failed step: leave no node running
            server.stop(timeout=120)
    assert server is None, 'a server without its client'


def check_client(stdout: str, stderr: str, folder) -> None:
    """Check a tryon_client run: its progress bar, its table and its files."""
    bars = [b for b in re.split(r'[\r\n]', stderr) if b.startswith('try-on:')]
    totals = {re.search(r' \d+/(\d+) steps ', bar)[1] for bar in bars}
    assert len(totals) == 1 and int(totals.pop()) > 1, stderr  # known from the first step
    assert all(bar.count('eta') == 1 and '/step' not in bar for bar in bars[1:]), stderr
    lines = stdout.splitlines()
    names = [line.split('  ')[0] for line in lines]
    for row in ('segmentation', 'total', 'camera wait', 'round trip', 'ROS overhead'):
        assert row in names, stdout
    assert 'segmentation_node' in stdout  # where the segmentation time went
    out = [line.split(': ', 1)[1] for line in lines if line.startswith(('result: ', 'panel: '))]
    assert len(out) == 2 and all(str(folder) in path for path in out), stdout
    print(f'tryon_client printed {len(lines)} lines')
