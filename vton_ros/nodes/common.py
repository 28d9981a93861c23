"""
What every vton_ros node shares: parameters from the schema, QoS, diagnostics, main().

Parameters are declared from :mod:`vton_ros.settings.schema` with descriptors (description, range,
read_only) and every change at run time is checked against the same schema, so a bad value
is rejected with a reason instead of reaching the pipeline.
"""

import os
import threading
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)

from vton_ros.nodes.runner import run  # noqa: F401 (every node's main calls common.run)
from vton_ros.settings import schema
from vton_ros.settings.param import type_mismatch
from vton_ros.settings.views import SettingsView
from vton_ros.supervision.rates import RateMeter  # noqa: F401 (the nodes' common.RateMeter)

LEVELS = {'ok': DiagnosticStatus.OK, 'warn': DiagnosticStatus.WARN,
          'error': DiagnosticStatus.ERROR, 'stale': DiagnosticStatus.STALE}
# Viewer topics (tryon/result, mask_overlay): a viewer started later gets the last one.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


RELOAD_TEXT = 'read-only after start (needs a restart)'


def descriptor(p: schema.Param, reloadable: bool = False) -> ParameterDescriptor:
    """
    Build the ParameterDescriptor of a schema parameter (description, range, read_only).

    ``reloadable`` (managed nodes): a read-only setting may change while the node is
    unconfigured, so rclpy must not refuse it; the node refuses it in the other states.
    """
    constraints = p.constraint_text()
    if reloadable:
        constraints = constraints.replace(RELOAD_TEXT, 'read-only while configured (set it '
                                          'while unconfigured; applies at the next configure)')
    desc = ParameterDescriptor(description=p.description,
                               read_only=p.read_only and not reloadable,
                               additional_constraints=constraints)
    if p.type is int and p.min is not None and p.max is not None:
        desc.integer_range = [IntegerRange(from_value=int(p.min), to_value=int(p.max),
                                           step=p.multiple_of)]
    elif p.type is float and p.min is not None and p.max is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(p.min),
                                                        to_value=float(p.max), step=0.0)]
    return desc


def check_device(name: str, value: str) -> None:
    """Raise ValueError naming the setting if device ``value`` does not exist here."""
    if value in ('auto', 'cpu'):  # exist everywhere: no torch import (segmentation_node's
        return  # pose backend runs without torch; a signal inside that import aborted it)
    from vton_ros.pipeline.device import resolve_device  # torch: only nodes with a device

    try:
        resolve_device(value)
    except ValueError as err:
        raise ValueError(f'{name}: {err}') from None


class SchemaNode(Node):
    """A Node whose parameters come from the schema; ``self.settings`` mirrors them."""

    RELOADABLE = False  # managed nodes: read-only settings change while unconfigured
    FIXED: tuple[str, ...] = ()  # read-only settings that stay so (used in the constructor)

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._schema_node = node_name
        self._settings_lock = threading.Lock()
        self.settings: dict[str, Any] = {}
        self._on_change: list[Callable[[dict[str, Any]], None]] = []
        for p in schema.params_for(node_name):
            try:
                value = self.declare_parameter(p.name, p.default,
                                               descriptor(p, self.RELOADABLE and
                                                          p.name not in self.FIXED)).value
                self.settings[p.name] = p.validate(value)
            except (ParameterException, ValueError) as err:
                reason = self._override_error(p) if isinstance(err, ParameterException) else ''
                raise ValueError(f'invalid parameter at start-up: {reason or err}') from None
        try:
            foreign = schema.check_given(self._parameter_overrides)  # rclpy ignores those
        except ValueError as err:
            raise ValueError(f'invalid parameter at start-up: {err}') from None
        if foreign:
            self.get_logger().warning(f'ignoring parameters that are not vton_ros settings: '
                                      f'{", ".join(sorted(foreign))}')
        if not self.RELOADABLE:  # managed nodes check their devices at configure
            self.check_devices()
        self.add_on_set_parameters_callback(self._check_parameters)

    def check_devices(self) -> None:
        """Raise ValueError naming the setting if a *.device setting does not exist here."""
        for name, value in self.settings.items():
            if name.endswith('.device'):
                check_device(name, value)

    def _override_error(self, p: schema.Param) -> str:
        """Explain in the schema's words why rclpy refused a given value ('' if it cannot)."""
        given = self.declare_parameter(p.name, None,
                                       ParameterDescriptor(dynamic_typing=True)).value
        try:
            p.validate(given)
        except ValueError as err:
            return str(err)
        return ''

    def set_parameters_atomically(self, parameter_list: list) -> SetParametersResult:
        """Refuse empty, unknown and mistyped names in the schema's words; else set them."""
        for parameter in parameter_list:
            reason = self._refusal(parameter)
            if reason:
                self.get_logger().warning(f'rejected parameter change: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        return super().set_parameters_atomically(parameter_list)

    def _refusal(self, parameter: Parameter) -> str:
        """Why the schema refuses this parameter before rclpy sees it ('' if it does not)."""
        name = parameter.name
        if name in self.settings:
            if parameter.value is None:
                return ''  # rclpy refuses to undeclare it
            return type_mismatch(schema.param(name), parameter.value)
        if name and self.has_parameter(name):
            return ''  # rclpy's own, e.g. use_sim_time
        try:
            schema.validate(self._schema_node, {name: None})
        except ValueError as err:
            return str(err)
        return ''

    def _check_parameters(self, parameters: list) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            if parameter.name not in self.settings:  # e.g. use_sim_time: rclpy's own
                continue
            try:
                changes[parameter.name] = schema.validate(
                    self._schema_node, {parameter.name: parameter.value})[parameter.name]
            except ValueError as err:
                self.get_logger().warning(f'rejected parameter change: {err}')
                return SetParametersResult(successful=False, reason=str(err))
        with self._settings_lock:
            self.settings.update(changes)
        for listener in self._on_change:
            listener(changes)
        return SetParametersResult(successful=True)

    def prepare_shutdown(self) -> None:
        """End work before exit: run() calls it on SIGINT/SIGTERM while the executor spins."""

    def close(self) -> None:
        """Free what the node holds (workers, models); called after spinning stopped."""

    def config(self, view: type[SettingsView]) -> Any:
        """Return the typed view (:mod:`vton_ros.settings.views`) of the current settings."""
        with self._settings_lock:
            return view.from_settings(self.settings)

    def setting(self, name: str) -> Any:
        """Return the current value of a schema parameter."""
        with self._settings_lock:
            return self.settings[name]

    def image_qos(self) -> QoSProfile:
        """Sensor-data QoS with depth and reliability from the qos.* parameters."""
        qos = QoSProfile(depth=self.setting('qos.depth'))
        qos.history = qos_profile_sensor_data.history
        qos.durability = qos_profile_sensor_data.durability
        qos.reliability = (ReliabilityPolicy.RELIABLE if self.setting('qos.reliability')
                           == 'reliable' else ReliabilityPolicy.BEST_EFFORT)
        return qos


class Diagnostics:
    """Publishes one DiagnosticStatus for a node on /diagnostics at a fixed period."""

    def __init__(self, node: SchemaNode, hardware_id: str = '') -> None:
        self._node = node
        self._lock = threading.Lock()
        self._level = 'ok'
        self._message = 'starting'
        self._values: dict[str, str] = {'pid': str(os.getpid())}  # new pid: restarted
        self._hardware_id = hardware_id or os.uname().nodename
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._timer = node.create_timer(node.setting('diagnostics.period'), self.publish)

    def update(self, level: str | None = None, message: str | None = None,
               **values: Any) -> None:
        """Set the level ('ok' | 'warn' | 'error' | 'stale'), message and key/values."""
        with self._lock:
            if level is not None:
                self._level = level
            if message is not None:
                self._message = message
            for key, value in values.items():
                self._values[key] = f'{value:.4g}' if isinstance(value, float) else str(value)

    def publish(self) -> None:
        """Send the current status now."""
        with self._lock:
            status = DiagnosticStatus(
                level=LEVELS[self._level],
                name=f'vton_ros: {self._node.get_fully_qualified_name()}',
                message=self._message, hardware_id=self._hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in sorted(self._values.items())])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
