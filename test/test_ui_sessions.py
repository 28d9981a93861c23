"""The mirror page's sessions without ROS: one per page, the shared slot, idle reset, waits."""

import cv2
from helpers import png
import numpy as np
import pytest
from vton_ros.ui import hub as kinds, sentences
from vton_ros.ui.catalog import Garments
from vton_ros.ui.frames import Camera, person_focus
from vton_ros.ui.session import NO_ANSWER, Rules
from vton_ros.ui.sessions import Sessions

H, W = 48, 64


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Port:
    """The node's side, recorded: goals sent (session, seq, spec) and cancels."""

    def __init__(self) -> None:
        self.sent = []
        self.canceled = []

    def send(self, session, seq, spec):
        self.sent.append((session, seq, spec))

    def cancel(self, handle):
        self.canceled.append(handle)


class Page:
    """What one page receives: states and images."""

    def __init__(self, sessions: Sessions) -> None:
        self.states, self.images = [], []
        self.session = sessions.join(self.states.append, self._image)

    def _image(self, kind, data):
        self.images.append((kind, data))

    @property
    def last(self) -> dict:
        return self.states[-1]


class Mirror:
    """Sessions with a recorded port, a fake clock and a camera fed by the test."""

    def __init__(self, catalog_dir, **rules) -> None:
        self.clock = Clock()
        self.port = Port()
        self.garments = Garments(str(catalog_dir))
        self.camera = Camera(size=5, clock=self.clock)
        self.sessions = Sessions(self.port, self.garments, self.camera,
                                 Rules(**dict({'answer_timeout': 30.0}, **rules)),
                                 idle_reset=20.0, clock=self.clock)
        self.sessions.server_ready(True)
        self.stamp = 0

    def frame(self, value: int, person: bool = True) -> np.ndarray:
        """Send a camera frame and its mask (a person on the left third when ``person``)."""
        self.stamp += 1
        rgb = np.full((H, W, 3), value, np.uint8)
        mask = np.zeros((H, W), np.uint8)
        if person:
            mask[10:40, 5:21] = 255
        self.camera.add_frame((self.stamp, 0), rgb)
        self.camera.add_mask((self.stamp, 0), mask)
        return rgb


def decoded(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def test_a_new_page_shows_the_live_view_only(catalog_dir):
    m = Mirror(catalog_dir)
    a = Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    m.sessions.running().on_accepted(1, 'h')
    a.session.on_result(1, 'SUCCESS', np.full((H, W, 3), 200, np.uint8), None, 1.0)
    assert a.last['state'] == 'result'
    b = Page(m.sessions)  # the next shopper opens the page
    assert [s['state'] for s in b.states] == ['offline', 'idle'] and b.images == []
    assert a.images  # A's before and result went to A only
    assert not b.last['frozen']


def test_before_is_the_frame_sent_however_late_the_result(catalog_dir):
    m = Mirror(catalog_dir)
    a = Page(m.sessions)
    person = m.frame(100)
    a.session.try_on('red_shirt')
    _, seq, spec = m.port.sent[-1]
    assert spec.person is person and spec.mask is not None  # the live pair, sent
    for value in range(120, 250, 10):  # frames go on; the ring forgets the tap's frame
        m.frame(value)
    a.session.on_accepted(seq, 'h')
    a.session.on_feedback(seq, 1, 4, 2.5, np.zeros((8, 6, 3), np.uint8))
    result = np.full((H, W, 3), 250, np.uint8)  # the result looks like the newest frames
    a.session.on_result(seq, 'SUCCESS', result, spec.mask, 9.0)
    assert [k for k, _ in a.images] == [kinds.BEFORE, kinds.PREVIEW, kinds.RESULT]
    assert abs(decoded(a.images[0][1]).mean() - 100) < 3  # before: the tap's frame
    assert a.last['state'] == 'result' and a.last['focus'] == pytest.approx(13 / 64)
    # "Try another" dresses that frame again, with its mask for the same cloth type.
    a.session.try_on('red_shirt')
    assert m.port.sent[-1][2].person is person and m.port.sent[-1][2].mask is spec.mask
    seq = m.port.sent[-1][1]
    a.session.on_accepted(seq, 'h2')
    a.session.on_result(seq, 'SUCCESS', result, spec.mask, 1.0)
    a.session.try_on('blue_shirt')  # another cloth type: the frame, the server's mask
    assert m.port.sent[-1][2].person is person and m.port.sent[-1][2].mask is None
    a.session.on_result(m.port.sent[-1][1], 'NO_PERSON_DETECTED', None, None, 0.0)
    assert a.last['status'] == 'Step in front of the mirror.'
    a.session.go_live()
    newest = m.frame(77)
    a.session.try_on('red_shirt')
    assert m.port.sent[-1][2].person is newest


def test_one_pages_actions_never_change_another(catalog_dir):
    m = Mirror(catalog_dir)
    a, b = Page(m.sessions), Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    seq = m.port.sent[-1][1]
    a.session.on_accepted(seq, 'goal-a')
    b_seen = len(b.states)
    b.session.cancel()  # B cannot cancel A's try-on
    b.session.go_live()  # B's "New photo"
    assert m.port.canceled == [] and a.last['state'] == 'running'
    b.session.try_on('blue_shirt')  # B taps: "Please wait" goes to B only
    assert len(m.port.sent) == 1
    assert b.last['status'] == sentences.state_sentence('busy') and b.last['busy']
    assert all(s['status'] != sentences.state_sentence('busy') for s in a.states)
    a.session.cancel()
    assert m.port.canceled == ['goal-a']
    a.session.on_result(seq, 'CANCELED', None, None, 0.0)
    assert 'cancel' in a.last['status'].lower()
    assert [s['state'] for s in b.states[b_seen:]] == ['idle', 'idle']  # B: its own only
    b.session.try_on('blue_shirt')  # the slot is free again
    assert m.port.sent[-1][0] is b.session


def test_a_cancel_before_acceptance_is_sent_when_the_goal_is_accepted(catalog_dir):
    m = Mirror(catalog_dir)
    a = Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    a.session.cancel()
    assert a.last['state'] == 'canceling' and m.port.canceled == []
    a.session.on_accepted(1, 'handle-1')
    assert m.port.canceled == ['handle-1']


def test_taps_and_cancels_are_rate_limited_per_page(catalog_dir):
    m = Mirror(catalog_dir, rate=1.0, burst=3)
    a, b = Page(m.sessions), Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    seq = m.port.sent[-1][1]
    a.session.on_accepted(seq, 'h')
    before = len(a.states)
    for _ in range(50):  # a tap storm on page A while its try-on runs
        a.session.try_on('red_shirt')
    assert len(a.states) - before == 2  # the bucket's other two taps, then nothing
    for _ in range(50):
        a.session.cancel()
    assert m.port.canceled == ['h']  # one cancel goes out, the rest are dropped
    a.session.on_result(seq, 'CANCELED', None, None, 0.0)
    b.session.try_on('blue_shirt')  # the storm did not touch page B's taps
    assert m.port.sent[-1][0] is b.session
    m.clock.now += 10  # A's bucket fills up again
    b.session.on_result(m.port.sent[-1][1], 'CANCELED', None, None, 0.0)
    a.session.try_on('red_shirt')
    assert m.port.sent[-1][0] is a.session


def test_uploads_belong_to_the_page_that_sent_them(catalog_dir):
    m = Mirror(catalog_dir)
    a, b = Page(m.sessions), Page(m.sessions)
    item = m.garments.add_upload(png(np.full((64, 48, 3), 90, np.uint8)), 'upper',
                                 a.session.page)
    assert item['id'] in [i['id'] for i in m.garments.items(a.session.page)]
    assert item['id'] not in [i['id'] for i in m.garments.items(b.session.page)]
    assert m.garments.thumbnail(item['id'], b.session.page) is None
    assert m.garments.get(item['id']) is None  # no page named: catalogue only
    m.frame(100)
    b.session.try_on(item['id'])  # another page's upload: not a garment of this page
    assert m.port.sent == []
    a.session.try_on(item['id'])
    assert m.port.sent[-1][2].garment_image.shape == (64, 48, 3)
    with pytest.raises(ValueError, match='page'):
        m.garments.add_upload(png(np.full((64, 48, 3), 90, np.uint8)), 'upper', '')
    m.sessions.leave(a.session)  # the page went: its upload goes once it stays away
    m.clock.now += 29
    m.sessions.tick()
    assert m.garments.has_uploads(a.session.page)
    m.clock.now += 2
    m.frame(100)
    m.sessions.tick()
    assert not m.garments.has_uploads(a.session.page) and a.session not in m.sessions.pages()


def test_a_page_that_reconnects_gets_its_session_back(catalog_dir):
    m = Mirror(catalog_dir)
    a = Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    seq = m.port.sent[-1][1]
    a.session.on_accepted(seq, 'h')
    m.sessions.leave(a.session)  # the WebSocket dropped (a missed heartbeat)
    m.clock.now += 5
    m.sessions.tick()
    assert m.port.canceled == []  # the try-on goes on for the page to come back
    assert Page(m.sessions).session is not a.session  # no id: a new page
    back = Page.__new__(Page)
    back.states, back.images = [], []
    back.session = m.sessions.join(back.states.append, back._image, a.session.page)
    assert back.session is a.session and back.states[-1]['state'] == 'running'
    assert [k for k, _ in back.images] == [kinds.BEFORE]  # the frame being dressed
    a.session.on_result(seq, 'SUCCESS', np.full((H, W, 3), 200, np.uint8), None, 1.0)
    assert back.states[-1]['state'] == 'result' and back.images[-1][0] == kinds.RESULT
    thief = Page.__new__(Page)  # the id of a page still connected is no way in
    thief.states, thief.images = [], []
    assert m.sessions.join(thief.states.append, thief._image, a.session.page) is not a.session
    m.frame(100)
    a.session.try_on('blue_shirt')
    a.session.on_accepted(m.port.sent[-1][1], 'h3')
    m.sessions.leave(a.session)  # gone for good: its try-on is cancelled
    m.clock.now += 31
    m.frame(100)
    m.sessions.tick()
    assert m.port.canceled == ['h3'] and a.session not in m.sessions.pages()


def test_nobody_in_view_resets_every_page(catalog_dir):
    m = Mirror(catalog_dir)
    a, b = Page(m.sessions), Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    a.session.on_accepted(1, 'h')
    a.session.on_result(1, 'SUCCESS', np.full((H, W, 3), 200, np.uint8), None, 1.0)
    m.garments.add_upload(png(np.full((64, 48, 3), 90, np.uint8)), 'upper', b.session.page)
    m.clock.now += 15
    m.frame(100)  # a person still in view: nothing is forgotten
    m.clock.now += 15
    assert m.sessions.tick() == 0 and a.last['state'] == 'result'
    m.frame(100, person=False)  # masks go on, empty: nobody there since 15 s
    m.clock.now += 4
    assert m.sessions.tick() == 0
    m.clock.now += 2
    assert m.sessions.tick() == 2  # A's result and B's upload
    assert a.last == {'state': 'idle', 'status': sentences.state_sentence('idle'),
                      'frozen': False, 'reset': True}
    assert b.last['reset'] and not m.garments.has_uploads(b.session.page)
    assert m.sessions.tick() == 0  # nothing left to forget
    m.frame(100, person=False)
    a.session.try_on('red_shirt')  # the empty mask: nobody to dress, said at once
    assert m.port.sent[-1][1] == 1 and a.last['status'] == 'Step in front of the mirror.'


def test_a_try_on_in_flight_is_not_reset(catalog_dir):
    m = Mirror(catalog_dir, answer_timeout=1000.0)
    a = Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')
    a.session.on_accepted(1, 'h')
    m.clock.now += 100
    assert m.sessions.tick() == 0 and a.last['state'] == 'running'


def test_every_wait_for_the_server_is_bounded(catalog_dir):
    m = Mirror(catalog_dir, answer_timeout=30.0)
    a = Page(m.sessions)
    m.frame(100)
    a.session.try_on('red_shirt')  # no acceptance ever comes
    m.clock.now += 29
    m.frame(100)  # the shopper waits in front of the mirror
    m.sessions.tick()
    assert a.last['state'] == 'sending'
    m.clock.now += 2
    m.sessions.tick()
    assert a.last['code'] == NO_ANSWER and a.last['status'] == sentences.error_sentence(NO_ANSWER)
    assert m.sessions.running() is None
    a.session.on_accepted(1, 'late')  # a late answer changes nothing
    assert a.last['code'] == NO_ANSWER
    m.frame(100)
    a.session.try_on('red_shirt')
    seq = m.port.sent[-1][1]
    a.session.on_accepted(seq, 'h2')
    for _ in range(5):  # feedback keeps the wait alive
        m.clock.now += 20
        m.frame(100)
        a.session.on_feedback(seq, 1, 4, 1.0, None)
        m.sessions.tick()
    assert a.last['state'] == 'running'
    m.clock.now += 31  # then silence: the goal is cancelled and the page told
    m.frame(100)
    m.sessions.tick()
    assert m.port.canceled == ['h2'] and a.last['code'] == NO_ANSWER


def test_no_fresh_camera_frame_and_the_server_away(catalog_dir):
    m = Mirror(catalog_dir, max_age=2.0)
    a = Page(m.sessions)
    a.session.try_on('red_shirt')
    assert a.last['status'] == sentences.error_sentence('NO_PERSON_FRAME')
    m.frame(100)
    m.clock.now += 3
    a.session.try_on('red_shirt')
    assert m.port.sent == [] and a.last['code'] == 'NO_PERSON_FRAME'
    m.frame(100)
    m.sessions.server_ready(False)
    a.session.try_on('red_shirt')
    assert m.port.sent == [] and a.last['state'] == 'offline'
    m.sessions.server_ready(True)
    a.session.try_on('red_shirt')
    seq = m.port.sent[-1][1]
    a.session.on_accepted(seq, 'h')
    m.sessions.server_ready(False)  # the server went away during the try-on
    a.session.on_result(seq, 'SUCCESS', np.zeros((H, W, 3), np.uint8), None, 1.0)
    assert a.last['state'] == 'offline' and m.sessions.running() is None


def test_new_settings_apply_to_every_page(catalog_dir):
    m = Mirror(catalog_dir, max_age=10.0)
    a = Page(m.sessions)
    m.frame(100)
    m.clock.now += 3
    m.sessions.set_rules(Rules(max_age=2.0))  # ros2 param set tryon.pair_max_age 2.0
    a.session.try_on('red_shirt')
    assert m.port.sent == [] and a.last['code'] == 'NO_PERSON_FRAME'
    assert Page(m.sessions).session.rules.max_age == 2.0  # and pages to come


def test_a_frame_without_its_mask_is_sent_alone():
    clock = Clock()
    camera = Camera(size=3, clock=clock)
    rgb = np.zeros((H, W, 3), np.uint8)
    camera.add_frame((1, 0), rgb)
    shot, code = camera.shot(10.0)
    assert code == '' and shot.person is rgb and shot.mask is None
    mask = np.zeros((H, W), np.uint8)
    mask[:, 40:50] = 200
    camera.add_mask((9, 0), mask)  # its frame never came: no pair, but a person seen
    assert camera.shot(10.0)[0].mask is None and camera.seen() == clock.now
    assert person_focus(mask) == pytest.approx(45 / 64)
    assert person_focus(np.zeros((4, 4), np.uint8)) is None


def test_a_try_and_cancel_storm_cannot_starve_another_page(catalog_dir):
    m = Mirror(catalog_dir, rate=1000.0, burst=1000)  # no rate limit: the slot's fairness
    attacker, shopper = Page(m.sessions), Page(m.sessions)
    m.frame(100)
    started = 0
    for _ in range(8):  # the shopper taps 8 times, each in the middle of a storm
        attacker.session.try_on('red_shirt')
        seq = m.port.sent[-1][1]
        attacker.session.cancel()
        shopper.session.try_on('blue_shirt')  # "Please wait": the slot is held
        attacker.session.on_result(seq, 'CANCELED', None, None, 0.0)
        attacker.session.try_on('red_shirt')  # at once again: the shopper goes first
        assert m.port.sent[-1][0] is not attacker.session or m.port.sent[-1][1] == seq
        shopper.session.try_on('blue_shirt')
        if m.port.sent[-1][0] is shopper.session:
            started += 1
            shopper.session.on_result(m.port.sent[-1][1], 'SUCCESS',
                                      np.zeros((H, W, 3), np.uint8), None, 1.0)
            shopper.session.go_live()
        m.clock.now += 0.5
    assert started == 8
    waiting = Page(m.sessions)
    m.sessions.claim(attacker.session)
    waiting.session.try_on('red_shirt')  # refused: it waits for the slot
    m.sessions.release(attacker.session)
    m.sessions.leave(waiting.session)  # the waiting page went: it holds nothing up
    shopper.session.try_on('blue_shirt')
    assert m.port.sent[-1][0] is shopper.session
    shopper.session.on_result(m.port.sent[-1][1], 'SUCCESS', np.zeros((H, W, 3), np.uint8),
                              None, 1.0)
    m.clock.now += 10  # nobody waits any more: the slot is anyone's
    m.frame(100)
    attacker.session.try_on('red_shirt')
    assert m.port.sent[-1][0] is attacker.session
