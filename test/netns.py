"""
Hosts for multi-host tests: Linux network namespaces joined by veth links (root only).

Each :class:`Hosts` names its namespaces and links after the pytest worker and process, so
parallel runs never share one; everything is removed on exit. Traffic stays between the
namespaces' own private addresses: nothing reaches the machine's real interfaces.
"""

import hashlib
import os
from pathlib import Path
import subprocess
import tempfile

import pytest


def _ip(*args: str) -> None:
    subprocess.run(['ip', *args], check=True, capture_output=True, text=True, timeout=30)


def require_netns() -> None:
    """Skip (fail under CI) where network namespaces cannot be made."""
    probe = f'vton_probe_{os.getpid()}'
    try:
        _ip('netns', 'add', probe)
        _ip('netns', 'del', probe)
    except (OSError, subprocess.CalledProcessError) as err:
        reason = f'network namespaces need root and iproute2 ({err}); run as root'
        if os.environ.get('CI'):
            pytest.fail(reason)
        pytest.skip(reason)


class Hosts:
    """
    Namespaces ("hosts") and point-to-point links between them.

    ``add_link('mirror', 'robot', '10.77.1')`` joins two hosts with a veth pair, giving
    them ``10.77.1.1`` and ``10.77.1.2``; :meth:`iface` names each end.
    """

    def __init__(self, *names: str) -> None:
        tag = os.environ.get('PYTEST_XDIST_WORKER', 'gw') + str(os.getpid() % 100000)
        self._tag = tag
        self.ns = {name: f'vton_{name}_{tag}' for name in names}
        self._links: list[str] = []
        self._ifaces: dict[tuple[str, str], str] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix='vton_hosts_')
        self._dir = Path(self._tmp.name)

    def __enter__(self) -> 'Hosts':
        for ns in self.ns.values():
            _ip('netns', 'add', ns)
            _ip('-n', ns, 'link', 'set', 'lo', 'up')
        return self

    def add_link(self, a: str, b: str, subnet: str) -> None:
        """Join hosts ``a`` and ``b``: ``subnet``.1 on ``a``, ``subnet``.2 on ``b`` (/24)."""
        n = len(self._links)
        end_a, end_b = f'v{n}a{self._tag}'[:15], f'v{n}b{self._tag}'[:15]
        _ip('link', 'add', end_a, 'type', 'veth', 'peer', 'name', end_b)
        self._links.append(end_a)
        for host, end, last in ((a, end_a, 1), (b, end_b, 2)):
            _ip('link', 'set', end, 'netns', self.ns[host])
            _ip('-n', self.ns[host], 'addr', 'add', f'{subnet}.{last}/24', 'dev', end)
            _ip('-n', self.ns[host], 'link', 'set', end, 'up')
            self._ifaces[(host, subnet)] = end

    def iface(self, host: str, subnet: str) -> str:
        """Return the interface name of ``host`` on the link of ``subnet``."""
        return self._ifaces[(host, subnet)]

    def set_link(self, host: str, subnet: str, up: bool) -> None:
        """Take ``host``'s end of a link down or up again."""
        _ip('-n', self.ns[host], 'link', 'set', self.iface(host, subnet),
            'up' if up else 'down')

    def argv(self, host: str, argv: list) -> list:
        """
        Return ``argv`` run inside ``host``, with a machine id of that host's own.

        Fast DDS tells hosts apart by /etc/machine-id: with the machine's one id everywhere,
        participants in two namespaces take each other for local and answer on their own
        loopback, so a private id (bind-mounted in a private mount namespace) makes each
        namespace a host of its own, as on a real LAN.
        """
        machine_id = self._dir / f'machine-id-{host}'
        if not machine_id.exists():
            machine_id.write_text(hashlib.md5(self.ns[host].encode()).hexdigest() + '\n')
        script = f'mount --bind {machine_id} /etc/machine-id && exec "$0" "$@"'
        return ['ip', 'netns', 'exec', self.ns[host], 'unshare', '--mount', 'sh', '-c', script,
                *[str(a) for a in argv]]

    def __exit__(self, *_exc) -> None:
        for ns in self.ns.values():
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True, timeout=30)
        self._tmp.cleanup()
