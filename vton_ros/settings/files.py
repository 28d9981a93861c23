"""
Parameter files and command-line overrides, checked against the schema.

The reference file is ``config/tryon.yaml`` (every setting); a *profile* (``config/cpu.yaml``,
``fast.yaml``, ...) is an overlay that states only what differs. Files apply in order, later
ones win, as ROS applies several ``--params-file`` arguments (the order of a bringup:
:mod:`vton_ros.settings.stack`). Every file is checked strictly: an unknown node or key is an
error, whether or not its section applies here.
"""

import argparse
import difflib
import re
from typing import Any, Iterable, Mapping, Sequence

from vton_ros.settings.schema import NODES, param, validate
import yaml

_TOKEN = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def load_files(paths: Sequence[str], namespace: str = '/') -> dict[str, dict[str, Any]]:
    """Read parameter files in order (a later one wins); return {node: {param: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        for node, values in load_yaml(str(path), namespace).items():
            out.setdefault(node, {}).update(values)
    return out


def normalize_namespace(namespace: str | None) -> str:
    """Return a ROS namespace as '/' or '/a/b'; ValueError for invalid names."""
    namespace = (namespace or '').strip().strip('/')
    if not namespace:
        return '/'
    if not all(_TOKEN.fullmatch(token) for token in namespace.split('/')):
        raise ValueError(f'invalid namespace {namespace!r}: use tokens of letters, digits and '
                         "'_' separated by '/', not starting with a digit (e.g. mirror_a)")
    return '/' + namespace


def node_key_matches(key: str, namespace: str, node: str) -> bool:
    """
    Tell whether a parameter-file node key applies to ``node`` in ``namespace``.

    The rules of rclpy and rclcpp: a key without a leading '/' gets one; '/*' matches one
    namespace token or node name, '/**' any number of tokens. ``camera_node`` thus means
    /camera_node only, ``/**/camera_node`` camera_node in any namespace, ``/**`` every node.
    """
    key = key if key.startswith('/') else '/' + key
    pattern = re.escape(key).replace(re.escape('/*'), r'(/\w+)').replace(r'\*', '*')
    fqn = normalize_namespace(namespace).rstrip('/') + '/' + node
    return re.fullmatch(pattern, fqn) is not None


def load_yaml(path: str, namespace: str = '/') -> dict[str, dict[str, Any]]:
    """
    Read a ROS parameter file and return the settings each node in ``namespace`` gets.

    Node keys follow rcl: ``camera_node`` (root namespace only), ``/ns/camera_node``,
    ``/**/camera_node`` (any namespace, as config/*.yaml do) and ``/**`` (every node).
    Nested and dotted keys are both accepted. Every section is validated, whether or not
    it applies here: an unknown node or key is an error, not silently ignored. Sections
    apply in file order (a later one wins). Returns {node: {param: value}} for the nodes
    that some section applies to.
    """
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping of node names')
    out: dict[str, dict[str, Any]] = {}
    for key, body in data.items():
        key = str(key)
        if not isinstance(body, dict) or set(body) != {'ros__parameters'}:
            raise ValueError(f'{path}: {key} must contain exactly "ros__parameters"')
        try:
            values = _flatten(body['ros__parameters'] or {})
            targets = _section_nodes(key, values)
            for node in targets:
                checked = validate(node, {n: v for n, v in values.items()
                                          if len(targets) == 1 or node in param(n).nodes})
                if node_key_matches(key, namespace, node):
                    out.setdefault(node, {}).update(checked)
        except ValueError as err:
            raise ValueError(f'{path}: {err}') from None
    return out


def _section_nodes(key: str, values: Mapping[str, Any]) -> tuple[str, ...]:
    """Nodes a section may be for: its node name, or (wildcard) all that own its keys."""
    name = key.rstrip('/').rsplit('/', 1)[-1]
    if name in NODES:
        return (name,)
    if name not in ('*', '**'):
        near = difflib.get_close_matches(name, NODES, n=1)
        raise ValueError(f'unknown node {key!r}'
                         + (f'; did you mean /**/{near[0]}?' if near else '')
                         + f' (nodes: {", ".join(NODES)}; keys like /**/camera_node '
                         'apply in any namespace)')
    for name in values:
        param(name)  # every key of a wildcard section must be a known setting
    return tuple(n for n in NODES if any(n in param(v).nodes for v in values))


def dump_yaml(values: Mapping[str, Mapping[str, Any]]) -> str:
    """Write {node: {param: value}} as a ROS parameter file valid in any namespace."""
    doc = {}
    for node, params in values.items():
        nested: dict[str, Any] = {}
        for name, value in params.items():
            group, field = name.split('.', 1)
            nested.setdefault(group, {})[field] = value
        doc[f'/**/{node}'] = {'ros__parameters': nested}
    return yaml.safe_dump(doc, sort_keys=False)


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(_flatten(value, name + '.'))
        else:
            flat[name] = value
    return flat


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--set NAME=VALUE`` (repeatable) for any schema setting."""
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='NAME=VALUE',
                        help='override a setting for every node that has it, e.g. '
                             '--set catvton.num_inference_steps=4 (see config/*.yaml)')


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``NAME=VALUE`` strings into validated {name: value}."""
    out = {}
    for item in items:
        name, sep, raw = item.partition('=')
        if not sep:
            raise ValueError(f'override {item!r} must look like NAME=VALUE')
        out[name.strip()] = param(name.strip()).validate(raw.strip())
    return out


def merge(base: Mapping[str, Mapping[str, Any]],
          overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Apply {name: value} overrides to every node that declares the name."""
    out = {node: dict(base.get(node, {})) for node in NODES}
    for name, value in overrides.items():
        for node in param(name).nodes:
            out[node][name] = value
    return out
