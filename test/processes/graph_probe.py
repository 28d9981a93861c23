"""
Watch the ROS graph until SIGINT, then print every topic name seen, as JSON.

Usage: graph_probe.py. Prints ``ready`` once its node exists; the multi-host test runs it on
a host that must not see the mirror's topics.
"""

import json
import signal

import rclpy


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('graph_probe')
    seen: set[str] = set()
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    print('ready', flush=True)
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.2)
        seen.update(name for name, _ in node.get_topic_names_and_types())
    print(json.dumps(sorted(seen)), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
