"""
The LAN mode's Fast DDS profile: loopback plus one network interface, an operator's choice.

The default stays the loopback-only profile (:func:`vton_ros.settings.stack.dds_environment`).
The LAN profile is the template ``config/fastdds_lan.xml``: :func:`lan_profile` fills in the
interface's IPv4 address and the initial peers, :func:`write_lan_profile` writes the result
for the node processes. :func:`write_sized_profile` gives one process (mirror_ui) the
profile in force with a smaller shared-memory segment of its own. No ROS here.
"""

import fcntl
import ipaddress
from pathlib import Path
import re
import shutil
import socket
import struct
import tempfile
from typing import Mapping

from vton_ros.settings.package_paths import package_share

LAN_TEMPLATE = 'fastdds_lan.xml'
_PEERS_MARK = '<!-- PEERS: one <locator><udpv4><address>IP</address></udpv4></locator> each -->'
_SIOCGIFADDR = 0x8915  # Linux ioctl: the IPv4 address of an interface
FASTDDS_PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'  # the Fast DDS profile's file
_SEGMENT = re.compile(r'(<segment_size>\s*)(\d+)(\s*</segment_size>)')


class LanError(ValueError):
    """An interface or peer that cannot open the stack to a LAN."""


def interface_address(name: str) -> str:
    """
    Return the IPv4 address of network interface ``name`` (Linux).

    Raises LanError naming the interfaces there are when ``name`` has no IPv4 address.
    """
    if not name or len(name) >= 16 or '/' in name:
        raise LanError(f'{name!r} is not a network interface name')
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR,
                                 struct.pack('256s', name.encode()))
        except OSError:
            known = ', '.join(n for _, n in socket.if_nameindex())
            raise LanError(f'network interface {name!r} does not exist or has no IPv4 '
                           f'address (interfaces here: {known})') from None
    address = socket.inet_ntoa(packed[20:24])
    if ipaddress.IPv4Address(address).is_loopback:
        raise LanError(f'{name} is a loopback interface: the default profile already '
                       'covers loopback')
    return address


def lan_profile(template: str, address: str, peers: tuple[str, ...] = ()) -> str:
    """
    Fill the LAN template: this machine's LAN ``address`` and the ``peers`` to announce to.

    address, peers: IPv4 addresses (LanError otherwise).
    """
    for value in (address, *peers):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise LanError(f'{value!r} is not an IPv4 address') from None
    if 'LAN_ADDRESS' not in template or _PEERS_MARK not in template:
        raise LanError('the LAN profile template lacks LAN_ADDRESS or the PEERS mark')
    locators = ''.join(f'<locator><udpv4><address>{peer}</address></udpv4></locator>'
                       for peer in peers)
    return template.replace('LAN_ADDRESS', address).replace(_PEERS_MARK, locators)


def write_lan_profile(out_dir: Path, interface: str, peers: tuple[str, ...] = ()) -> Path:
    """Write the LAN profile of ``interface`` into ``out_dir``; return its path."""
    template = (package_share() / 'config' / LAN_TEMPLATE).read_text()
    text = lan_profile(template, interface_address(interface), peers)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f'fastdds_lan_{interface}.xml'
    path.write_text(text)
    return path


def sized_profile(text: str, size: int) -> str:
    """Return the Fast DDS profile ``text`` with every shared-memory segment_size <= ``size``."""
    return _SEGMENT.sub(lambda m: f'{m[1]}{min(int(m[2]), size)}{m[3]}', text)


def write_sized_profile(env: Mapping[str, str], size: int) -> Path | None:
    """
    Write the profile ``env`` names, its segments at most ``size`` bytes, to a private folder.

    Fast DDS maps and touches a participant's whole segment when it creates it, so the
    segment size is resident memory of the process. Only the sizes change: the transports,
    the addresses and discovery stay those of the profile in force (loopback-only by
    default). Return the new file, or None where ``env`` names no readable profile or none
    of its segments is larger. The caller points FASTDDS_PROFILE_ENV at it before rclpy.init
    and removes it (:func:`remove_profile`) once its participant exists.
    """
    try:
        text = Path(env.get(FASTDDS_PROFILE_ENV) or '').read_text()
    except (OSError, UnicodeDecodeError):
        return None
    sized = sized_profile(text, size)
    if sized == text:
        return None
    path = Path(tempfile.mkdtemp(prefix='vton_dds_')) / 'profile.xml'
    path.write_text(sized)
    return path


def remove_profile(path: Path | None) -> None:
    """Remove a profile that :func:`write_sized_profile` wrote (None: nothing)."""
    if path is not None:
        shutil.rmtree(path.parent, ignore_errors=True)
