"""Supervision without ROS: why a process ended, process figures, soak reports, shared memory."""
