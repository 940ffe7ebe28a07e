"""Launch segment_node with a model preset and overrides.

    ros2 launch seg_perception segment.launch.py model:=panoptic_deeplab_mobilenetv2 \
        resolution:=256x512 image_topic:=/camera/image_raw

QoS follows the camera's publishers by default (qos_reliability:=auto); force it with
qos_reliability:=reliable|best_effort and set the reader history with qos_depth:=N.

All logic (argument list, preset lookup, precedence, validation) lives in
seg_perception.ros.launch_config, which is tested without the launch package.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from seg_perception.ros.launch_config import LAUNCH_ARGUMENTS, resolve_launch


def _node(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    spec = resolve_launch(values)
    return [Node(
        package="seg_perception",
        executable="segment_node",
        name="segment_node",
        namespace=spec.namespace,
        parameters=spec.parameters,
        remappings=spec.remappings,
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                              **({"choices": list(a.choices)} if a.choices else {}))
        for a in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_node)])
