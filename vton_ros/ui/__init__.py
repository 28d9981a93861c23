"""
The mirror kiosk page, without ROS: web app, WebSocket hub, try-on session, sentences.

:mod:`vton_ros.nodes.mirror_ui` wires these to the TryOn action and the image topics.
"""
