"""
Which model tryon_server runs: the real CatVTON, the demo model or random test weights.

tryon_server publishes it as JSON ``{"kind": "real"|"demo"|"random", "name": ...}`` on
``tryon/model`` (std_msgs/String, reliable, transient_local, depth 1) once the model is
loaded; the mirror page and tryon_client read it and say so when it is not CatVTON. ROS-
and torch-free: the kind follows from the loaded folders alone.
"""

from dataclasses import dataclass
import json
import os

from vton_ros.settings import package_paths

KINDS = ('real', 'demo', 'random')
TOPIC = 'tryon/model'
DEMO_CARD = 'MODEL_CARD.md'  # models/demo/MODEL_CARD.md starts with DEMO_TITLE
DEMO_TITLE = '# vton_ros demo model'
RANDOM_MARKER = 'RANDOM_TEST_WEIGHTS.txt'  # make_test_weights' note in each folder


@dataclass(frozen=True)
class ModelIdentity:
    """The kind of model (one of KINDS) and its name (a folder path or hub id)."""

    kind: str
    name: str

    def __post_init__(self) -> None:
        """Refuse a kind outside KINDS."""
        if self.kind not in KINDS:
            raise ValueError(f'model kind {self.kind!r}: expected one of {", ".join(KINDS)}')

    def to_json(self) -> str:
        """Return the message text: ``{"kind": ..., "name": ...}``."""
        return json.dumps({'kind': self.kind, 'name': self.name})

    @classmethod
    def from_json(cls, text: str) -> 'ModelIdentity':
        """Parse a ``tryon/model`` message; ValueError when it is not one."""
        try:
            data = json.loads(text)
            return cls(str(data['kind']), str(data['name']))
        except (TypeError, KeyError, json.JSONDecodeError) as err:
            raise ValueError(f'not a model identity: {text[:80]!r} ({err})') from None

    def label(self) -> str:
        """Name the model for a person: what it is and, unless CatVTON, that it is not."""
        if self.kind == 'demo':
            return f'DEMO MODEL {self.name}: trained on synthetic data, not CatVTON'
        if self.kind == 'random':
            return f'RANDOM TEST WEIGHTS {self.name}: not CatVTON, results are noise'
        return f'CatVTON {self.name}'

    def warning(self) -> str:
        """Return the label for the demo model or random weights, '' for CatVTON."""
        return '' if self.kind == 'real' else self.label()


def demo_folder(source: str) -> str | None:
    """Return the demo model's folder if ``source`` (a setting) lies in it, else None."""
    folder = os.path.expanduser(package_paths.resolve(source or ''))
    for candidate in (folder, os.path.dirname(folder.rstrip(os.sep))):
        if candidate and _starts_with(os.path.join(candidate, DEMO_CARD), DEMO_TITLE):
            return candidate
    return None


def is_random(source: str) -> bool:
    """Tell whether a local folder setting holds make_test_weights' RANDOM weights."""
    folder = os.path.expanduser(package_paths.resolve(source or ''))
    return os.path.isfile(os.path.join(folder, RANDOM_MARKER))


def identify(base_model: str, vae: str, attn_ckpt: str,
             random_weights: bool = False) -> ModelIdentity:
    """
    Return the identity of a model loaded from these settings (folders or hub ids).

    random_weights: what the loader found (the pipeline's flag), besides the folders' own
    markers. Random wins over demo, demo over real; the name is the folder of the demo
    model (``package://vton_ros/models/demo`` when it is the bundled one), the folder of
    random weights, else CatVTON's attention weights.
    """
    sources = (base_model, vae, attn_ckpt)
    if random_weights or any(is_random(s) for s in sources):
        base = os.path.expanduser(package_paths.resolve(base_model))
        return ModelIdentity('random', os.path.dirname(base.rstrip(os.sep)) or base)
    for source in sources:
        folder = demo_folder(source)
        if folder is not None:
            return ModelIdentity('demo', package_name(os.path.normpath(folder)))
    return ModelIdentity('real', package_paths.resolve(attn_ckpt))


def package_name(folder: str) -> str:
    """Name a folder of vton_ros' share as ``package://vton_ros/...``, others unchanged."""
    try:
        share = package_paths.package_share().resolve()
        inside = os.path.relpath(os.path.realpath(folder), share)
    except ValueError:  # no share folder, another drive
        return folder
    if inside.startswith('..'):
        return folder
    return f'{package_paths.SCHEME}{package_paths.PACKAGE}/{inside}'


def _starts_with(path: str, words: str) -> bool:
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read(len(words) + 64).lstrip().startswith(words)
    except OSError:
        return False
