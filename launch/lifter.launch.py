"""Live 3D pose lifting: [video_source] -> [detector_node] -> lifter_node -> [RViz].

    ros2 launch diffhpe_ros lifter.launch.py video:=/path/clip.mp4 rviz:=true
    ros2 launch diffhpe_ros lifter.launch.py detector:=false model:=/path/lifter.onnx

Arguments: detector (true: run MediaPipe on `image`), video (a file: start video_source, which
publishes `image` and `camera_info`), rviz (true: RViz with rviz/skeleton.rviz), model (the
lifter's model_path; empty, the default: model_path from config/lifter.yaml). Topics are
relative: push the whole pipeline into a namespace with PushRosNamespace, or remap.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from diffhpe_ros import params

PACKAGE = "diffhpe_ros"


def lifter_node(context):
    """The lifter with config/lifter.yaml; `model`, when given, overrides its model_path (an
    override that is always applied, even empty or defaulted, would hide the file's value)."""
    parameters = [PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "lifter.yaml"])]
    model = LaunchConfiguration("model").perform(context)
    if model:
        parameters.append({"model_path": model})
    return [Node(package=PACKAGE, executable="lifter_node", name=params.NODE_NAME,
                 output="screen", parameters=parameters)]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    video = LaunchConfiguration("video")
    return LaunchDescription([
        DeclareLaunchArgument("detector", default_value="true",
                              description="Run detector_node (MediaPipe Pose) on `image`."),
        DeclareLaunchArgument("video", default_value="",
                              description="Video file to play with video_source (empty: none)."),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="Start RViz with rviz/skeleton.rviz."),
        DeclareLaunchArgument("model", default_value="",
                              description=params.SPECS["model_path"].description
                              + " Empty: model_path of config/lifter.yaml."),
        Node(package=PACKAGE, executable="video_source", name="video_source", output="screen",
             parameters=[{"video_path": video}],
             condition=IfCondition(NotEqualsSubstitution(video, ""))),
        Node(package=PACKAGE, executable="detector_node", name="detector_node", output="screen",
             condition=IfCondition(LaunchConfiguration("detector"))),
        OpaqueFunction(function=lifter_node),
        Node(package="rviz2", executable="rviz2", name="rviz2",
             arguments=["-d", PathJoinSubstitution([share, "rviz", "skeleton.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
