"""
Managed (lifecycle) nodes: configure loads, activate works, deactivate stops, cleanup frees.

camera_node, segmentation_node and tryon_server follow the standard ROS 2 node lifecycle,
so ``ros2 lifecycle`` and nav2's lifecycle manager drive them. A node implements four
hooks: :meth:`ManagedNode.configure` (open/load; an exception leaves the node unconfigured
with one ERROR line), :meth:`~ManagedNode.activate`, :meth:`~ManagedNode.deactivate` and
:meth:`~ManagedNode.release` (free; safe in any state). Publishers and subscriptions made
with :meth:`~ManagedNode.publisher`, :meth:`~ManagedNode.subscription` and
:meth:`~ManagedNode.timer` in configure are destroyed at cleanup; the publishers send
only while the node is active. With ``lifecycle.autostart`` (the default) the node
configures and activates itself at start and a failure stops the process as before.
/diagnostics carries ``lifecycle_state``.
"""

from typing import Any, Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState, \
    TransitionCallbackReturn
from rclpy.timer import Timer

from vton_ros.nodes import common
from vton_ros.settings import schema
from vton_ros.supervision import procstat

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
LIVE_STATES = ('unconfigured', 'inactive', 'active')  # primary states before finalized


class ManagedNode(common.SchemaNode, LifecycleNode):
    """A schema node with the lifecycle; subclasses fill in the four hooks."""

    RELOADABLE = True

    def __init__(self, node_name: str) -> None:
        super().__init__(node_name)
        self.diag = common.Diagnostics(self)
        self._entities: list = []  # made in configure, destroyed at cleanup
        self._autostarting = False
        self._exiting = False  # the process ends: no need to hand memory back
        self._failure = ''
        self._entered('unconfigured', log=False)

    # ---- the hooks ------------------------------------------------------------------
    def configure(self) -> None:
        """Open and load what the node needs; raise with the reason if it cannot."""

    def activate(self) -> None:
        """Start working (publishers are already on)."""

    def deactivate(self, final: bool = False) -> None:
        """Stop working; ``final`` when the node shuts down. Safe in any state."""

    def release(self) -> None:
        """Free what configure made (models, devices). Safe in any state, repeatable."""

    # ---- helpers for the hooks ------------------------------------------------------
    def publisher(self, msg_type: Any, topic: str, qos: Any) -> Any:
        """Return a new lifecycle publisher: it sends while active, cleanup destroys it."""
        pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._entities.append(pub)
        return pub

    def subscription(self, msg_type: Any, topic: str, callback: Callable, qos: Any) -> Any:
        """Create a subscription that cleanup destroys."""
        sub = self.create_subscription(msg_type, topic, callback, qos)
        self._entities.append(sub)
        return sub

    def timer(self, period: float, callback: Callable) -> Any:
        """Create a timer that cleanup destroys."""
        timer = self.create_timer(period, callback)
        self._entities.append(timer)
        return timer

    def state_label(self) -> str:
        """Return the lifecycle state: unconfigured, inactive, active, finalized, ..."""
        return self._state_machine.current_state[1]

    def report(self, level: str, message: str) -> None:
        """Put a level and message on /diagnostics (tryon_server keeps its goal health)."""
        self.diag.update(level, message)

    # ---- start-up and shutdown (runner) ---------------------------------------------
    def start_up(self) -> None:
        """Configure and activate if lifecycle.autostart; raise ValueError if it fails."""
        if not self.setting('lifecycle.autostart'):
            self.get_logger().info('lifecycle.autostart is false: unconfigured, waiting for '
                                   'a lifecycle manager (configure, then activate)')
            return
        self._autostarting = True
        try:
            if self.trigger_configure() != SUCCESS or self.trigger_activate() != SUCCESS:
                raise ValueError(self._failure or f'lifecycle state {self.state_label()}')
        finally:
            self._autostarting = False
        self.get_logger().info('configured and activated (lifecycle.autostart)')

    def prepare_shutdown(self) -> None:
        """On SIGINT/SIGTERM: the shutdown transition (goals end, models are freed)."""
        self._exiting = True
        if self.state_label() in LIVE_STATES:
            self.trigger_shutdown()

    def close(self) -> None:
        """Free everything, whatever the state (after spinning stopped)."""
        self.release()

    # ---- transitions ----------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check devices and run configure(); a failure goes back to unconfigured."""
        self._failure = ''
        try:
            self.check_devices()
            self.configure()
        except Exception as err:  # noqa: B902 - a failed configure must not kill the node
            self._failure = str(err)
            self._free()
            if not self._autostarting:  # autostart: the runner reports it as it stops
                self.get_logger().error(f'configure failed: {err}')
            self._entered('unconfigured', 'error', f'configure failed: {err}')
            return FAILURE
        self._entered('inactive')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Turn the publishers on, then activate()."""
        ret = super().on_activate(state)
        self.activate()
        self._entered('active')
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """deactivate(), then turn the publishers off."""
        self.deactivate()
        self._entered('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free models and devices; log the resident memory before and after."""
        before = procstat.rss_mb()
        self._free()
        after = procstat.rss_mb()
        self.get_logger().info(f'cleanup: released; RSS {before:.0f} -> {after:.0f} MiB')
        self.diag.update(rss_mb=after)
        self._entered('unconfigured')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state: stop (goals end with a result), free, finalized."""
        self.deactivate(final=True)
        self._free()
        self._entered('finalized')
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free what was made and go back to unconfigured (a transition raised)."""
        self.get_logger().error(f'error during a transition from {state.label}: freed, '
                                'back to unconfigured')
        self._free()
        self._entered('unconfigured', 'error', 'transition error')
        return SUCCESS

    def _free(self) -> None:
        self.release()
        for entity in self._entities:
            if isinstance(entity, LifecyclePublisher):
                self.destroy_lifecycle_publisher(entity)
            elif isinstance(entity, Timer):
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        self._entities.clear()
        if not self._exiting:
            procstat.release_memory()

    def _entered(self, label: str, level: str = 'ok', message: str = '',
                 log: bool = True) -> None:
        if log and not self._autostarting:  # autostart logs one line when it is done
            self.get_logger().info(f'lifecycle state: {label}')
        self.report(level, message or f'lifecycle state {label}')
        self.diag.update(lifecycle_state=label)

    def _check_parameters(self, parameters: list) -> SetParametersResult:
        """Read-only settings may change only while unconfigured (used at configure)."""
        label = self.state_label()
        if label != 'unconfigured':
            for parameter in parameters:
                if parameter.name in self.settings and schema.param(parameter.name).read_only:
                    reason = (f'{parameter.name} is read-only while the node is {label}: set '
                              'it while unconfigured (lifecycle cleanup); it applies at the '
                              'next configure')
                    self.get_logger().warning(f'rejected parameter change: {reason}')
                    return SetParametersResult(successful=False, reason=reason)
        return super()._check_parameters(parameters)
