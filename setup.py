"""ament_python package vton_ros."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'vton_ros'
NODES = ('camera_node', 'segmentation_node', 'tryon_server', 'mirror_ui', 'metrics_exporter')
CLI = ('tryon_bringup', 'tryon_client', 'vton_soak')  # torch-free: they start at once
TOOLS = ('train_segmentation', 'compose_backgrounds', 'make_masks', 'vton_bench',
         'fetch_weights', 'make_test_weights', 'make_tryon_data', 'train_demo_model',
         'export_onnx', 'make_garments', 'train_demo_taesd')


def tree(folder):
    """data_files entries installing every file under ``folder`` into the share."""
    return [(os.path.join('share', PACKAGE, path), [os.path.join(path, f) for f in files])
            for path, _, files in sorted(os.walk(folder)) if files]


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={PACKAGE + '.ui': ['static/*']},  # the mirror page's bundled assets
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE + '/config', glob('config/*')),
    ] + tree('models/demo') + tree('garments'),
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='vton_ros developers',
    maintainer_email='vton-ros@example.com',
    description='On-device diffusion virtual try-on (CatVTON) for a smart mirror on ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [f'{n} = {PACKAGE}.nodes.entry:{n}' for n in NODES]
        + [f'{n} = {PACKAGE}.cli.{n}:main' for n in CLI]
        + [f'{n} = {PACKAGE}.tools.{n}:main' for n in TOOLS],
    },
)
