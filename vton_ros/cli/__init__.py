"""
Command-line tools that start, drive and soak the ROS stack (console_scripts).

They start without torch, so they answer in about a second (a bad argument, a missing file)
where the model and data tools in :mod:`vton_ros.tools` first load torch and torchvision.
"""
