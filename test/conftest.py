"""Fixtures shared by the tests: tiny weights, inputs, one thread."""

import json
import os
from pathlib import Path
import shutil
from typing import Callable

from filelock import FileLock
from helpers import png
import numpy as np
import pytest
import torch

from vton_ros.media import samples
from vton_ros.tools.make_test_weights import write_test_weights
from vton_ros.training.tryon_data import draw_pattern, flat_lay


@pytest.fixture(scope='module')
def one_thread():
    """Tiny models gain nothing from threads; one avoids OpenMP spinning on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> dict:
    """Build a read-only folder once per test run, shared by every xdist worker.

    ``build(folder)`` writes it and returns a JSON-able description, which every later
    caller gets back. A file lock makes the other workers wait for the first build.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        root = root.parent  # the run's folder, above the workers' own
    folder = root / name
    done = root / f'{name}.json'
    with FileLock(str(root / f'{name}.lock')):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
    return json.loads(done.read_text())


@pytest.fixture(scope='session')
def tiny(tmp_path_factory) -> dict:
    """Write the tiny random CatVTON weights once per run; from_pretrained's arguments.

    The one way the tests make tiny weights: make_test_weights' write_test_weights (seed 0),
    once for all xdist workers. Returns the folders base_model, vae, attn_ckpt and
    tiny_vae; read only.
    """
    return built_once(tmp_path_factory, 'weights', lambda out: write_test_weights(str(out)))


@pytest.fixture(scope='session')
def tiny_weights(tiny) -> Path:
    """Return the folder of the ``tiny`` weights, as make_test_weights --out names it.

    It holds stable-diffusion-inpainting, sd-vae-ft-mse, CatVTON and taesd.
    """
    return Path(tiny['base_model']).parent


@pytest.fixture(scope='module')
def inputs():
    """Return a real portrait (512x512), a drawn garment and an upper-body mask."""
    person = samples.portrait('astronaut')
    garment = samples.garment('tshirt', (30, 90, 200), 128, 96)
    mask = np.zeros(person.shape[:2], np.uint8)
    mask[200:420, 120:400] = 255
    return person, garment, mask


def export_settings(paths: dict, **extra) -> dict:
    """tryon_server settings for tiny weights at 64x48 fp32 (plus ``extra``)."""
    from vton_ros.settings import schema as params

    settings = params.defaults('tryon_server')
    settings.update({f'catvton.{k}': str(v) for k, v in paths.items()})
    settings.update({'catvton.height': 64, 'catvton.width': 48, 'catvton.precision': 'fp32',
                     'catvton.attn_version': 'vitonhd', 'catvton.device': 'cpu'}, **extra)
    return settings


@pytest.fixture(scope='session')
def onnx_export(tiny, tmp_path_factory) -> Path:
    """Export the tiny weights (64x48 fp32, vitonhd, DeepCache branch 0) once: the folder."""
    from vton_ros.tools.export_onnx import main

    def export(out: Path) -> str:
        argv = ['--out', str(out)]
        for name, value in export_settings(tiny, **{'catvton.cache_interval': 2}).items():
            if name.split('.')[1] in tuple(tiny) + ('height', 'width', 'precision',
                                                    'attn_version', 'cache_interval'):
                argv += ['--set', f'{name}={value}']
        assert main(argv) == 0
        return str(out)

    return Path(built_once(tmp_path_factory, 'onnx', export))


# The longest modules (a full run's durations, longest first): started first, so that the
# end of a parallel run has only short modules left to share between the workers.
LONGEST = ('test_mirror_browser', 'test_shutdown', 'test_bench', 'test_start_errors',
           'test_soak', 'test_readme', 'test_ros_system', 'test_server_robustness', 'test_lan',
           'test_training', 'test_client_inputs', 'test_hostile_clients', 'test_onnx_system')


def pytest_collection_modifyitems(config, items):
    """Run the longest modules first, then the other heavy ones, the quick ones last.

    Heavy: with node processes, slow tests or lint. Under ``--dist loadfile`` a worker takes
    the next module when it is done: quick modules at the end keep both workers busy to the
    last minute. The order within a module stays.
    """
    heavy = {item.module for item in items
             if any(item.get_closest_marker(name) for name in ('stack', 'slow', 'linter'))}

    def rank(item) -> tuple[bool, int]:
        name = item.module.__name__.rpartition('.')[2]
        return item.module not in heavy, LONGEST.index(name) if name in LONGEST else len(LONGEST)

    items.sort(key=rank)


def pytest_sessionfinish(session, exitstatus):
    """Give back the Fast DDS shared memory that this session's killed nodes left.

    Only the files its own node processes wrote down (rosutil.SHM_RECORDS), once those
    processes have ended: never a sweep of the machine's /dev/shm.
    """
    import shutil

    from rosutil import SHM_RECORDS
    from vton_ros.supervision import dds_shm

    dds_shm.release_all_dead(SHM_RECORDS)
    for record in SHM_RECORDS.iterdir():  # a port file another process still holds stays
        if not Path(f'/proc/{record.name}').exists():
            record.unlink()
    if not any(SHM_RECORDS.iterdir()):  # else a node of ours still runs: keep its record
        shutil.rmtree(SHM_RECORDS, ignore_errors=True)


@pytest.fixture(scope='module')
def catalog_dir(tmp_path_factory):
    """Return a garment catalogue folder: two drawn shirts, red_shirt upper, blue_shirt lower."""
    folder = tmp_path_factory.mktemp('garments')
    for name, colour in (('red_shirt', (200, 30, 40)), ('blue_shirt', (40, 70, 190))):
        rgb = flat_lay(draw_pattern('stripes', 128, 96, (colour, (245, 245, 245)), 24))
        (folder / f'{name}.png').write_bytes(png(rgb))
    (folder / 'catalog.yaml').write_text('red_shirt: upper\nblue_shirt: lower\n')
    return folder
