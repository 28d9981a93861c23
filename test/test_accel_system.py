"""
The opt-in accelerations (issue 10) through the real action server and a real client.

tryon_server runs as a separate process (the goals carry their person and mask) on tiny
RANDOM weights with the tiny decoder, tiny previews, guidance interval, feature caching,
channels_last and (no-op on CPU) sequential offload set as node parameters.
"""

import pytest
from stack import person_goal, R, System

pytestmark = pytest.mark.stack  # node processes: not in make check


@pytest.fixture(scope='module')
def fast_system(tmp_path_factory, tiny_weights):  # noqa: F811 (the imported fixture)
    sys_ = System(tmp_path_factory.mktemp('fast_system'), tiny_weights, server={
        'catvton.tiny_vae': tiny_weights / 'taesd', 'catvton.decoder': 'tiny',
        'catvton.preview_decoder': 'tiny', 'catvton.guidance_start': 0.0,
        'catvton.guidance_end': 0.5, 'catvton.cache_interval': 2,
        'catvton.channels_last': True, 'catvton.offload': 'sequential'}, camera=False)
    yield sys_
    if sys_.client.context.ok():
        sys_.close()


def test_fast_options_serve_goals_with_real_previews(fast_system):
    out = fast_system.send(person_goal())
    r = out.result
    assert r.error_code == R.SUCCESS, r.message
    assert (r.image.width, r.image.height) == (96, 120)  # composed into the goal's person
    assert [f.step for f in out.feedback] == [1, 2, 3, 4]
    previews = [f.preview for f in out.feedback if f.preview.width > 0]
    # 64x48 try-on: person latents 8x6, tiny-decoder previews twice that (small feedback)
    assert [(p.width, p.height, p.encoding) for p in previews] == [(12, 16, 'rgb8')] * 2
    again = fast_system.send(person_goal()).result
    assert bytes(again.image.data) == bytes(r.image.data)  # same seed, same image


def test_speed_settings_change_at_runtime_and_bad_ones_are_refused(fast_system):
    first = fast_system.send(person_goal()).result
    assert fast_system.set_param('catvton.cache_interval', 1).successful
    assert fast_system.set_param('catvton.guidance_end', 1.0).successful
    plain = fast_system.send(person_goal()).result
    assert plain.error_code == R.SUCCESS, plain.message
    assert bytes(plain.image.data) != bytes(first.image.data)  # other forwards ran
    refused = fast_system.set_param('catvton.cache_interval', 0)
    assert not refused.successful and 'range' in refused.reason, refused.reason
    refused = fast_system.set_param('catvton.decoder', 'full')
    assert not refused.successful and 'read-only' in refused.reason.lower(), refused.reason
    assert fast_system.set_param('catvton.guidance_start', 0.9).successful
    assert fast_system.set_param('catvton.guidance_end', 0.5).successful
    bad = fast_system.send(person_goal()).result
    assert bad.error_code == R.INVALID_ARGUMENT
    assert 'guidance_start' in bad.message and 'guidance_end' in bad.message, bad.message
    assert fast_system.set_param('catvton.guidance_start', 0.0).successful
    assert fast_system.send(person_goal()).result.error_code == R.SUCCESS
    assert fast_system.server.popen.poll() is None
