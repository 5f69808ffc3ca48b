"""Live 3D pose lifting: [video_source] -> [detector_node] -> lifter_node -> [RViz].

    ros2 launch diffhpe_ros lifter.launch.py video:=/path/clip.mp4 loop:=true rviz:=true
    ros2 launch diffhpe_ros lifter.launch.py detector:=false model:=/path/lifter.onnx

Arguments: detector (true: run MediaPipe on `image`), video (a file: start video_source, which
publishes `image` and `camera_info`), loop and scale (video_source's: play the file again and
again; resize factor of the frames), rviz (true: RViz with rviz/skeleton.rviz), model (the
lifter's model_path; empty, the default: model_path from config/lifter.yaml). Topics are
relative: push the whole pipeline into a namespace with PushRosNamespace, or remap.

The arguments are checked before any process starts: with rviz:=true and no rviz2 installed the
launch fails at once, leaving nothing running.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from diffhpe_ros import params

PACKAGE = "diffhpe_ros"
RVIZ_PACKAGE = "rviz2"


def is_true(name: str, context) -> bool:
    """A boolean launch argument as launch reads one ('true'/'false', any case, or 1/0)."""
    return IfCondition(LaunchConfiguration(name)).evaluate(context)


def check_rviz_installed() -> None:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(RVIZ_PACKAGE)
    except PackageNotFoundError:
        raise RuntimeError(
            f"rviz:=true, but the {RVIZ_PACKAGE} package is not installed (not in "
            "AMENT_PREFIX_PATH): install it (e.g. apt install ros-$ROS_DISTRO-rviz2) or launch "
            "with rviz:=false; nothing was started") from None


def launch_setup(context):
    """The nodes, once the arguments are checked: nothing starts when a check fails."""
    rviz = is_true("rviz", context)
    if rviz:
        check_rviz_installed()
    share = FindPackageShare(PACKAGE)
    nodes = []
    video = LaunchConfiguration("video").perform(context)
    if video:
        nodes.append(Node(
            package=PACKAGE, executable="video_source", name="video_source", output="screen",
            parameters=[{"video_path": video,
                         "loop": ParameterValue(LaunchConfiguration("loop"), value_type=bool),
                         "scale": ParameterValue(LaunchConfiguration("scale"), value_type=float)}]))
    if is_true("detector", context):
        nodes.append(Node(package=PACKAGE, executable="detector_node", name="detector_node",
                          output="screen"))
    # config/lifter.yaml; `model`, when given, overrides its model_path (an override that is
    # always applied, even empty or defaulted, would hide the file's value).
    lifter_params = [PathJoinSubstitution([share, "config", "lifter.yaml"])]
    model = LaunchConfiguration("model").perform(context)
    if model:
        lifter_params.append({"model_path": model})
    nodes.append(Node(package=PACKAGE, executable="lifter_node", name=params.NODE_NAME,
                      output="screen", parameters=lifter_params))
    if rviz:
        nodes.append(Node(package=RVIZ_PACKAGE, executable="rviz2", name="rviz2",
                          arguments=["-d", PathJoinSubstitution([share, "rviz", "skeleton.rviz"])]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("detector", default_value="true",
                              description="Run detector_node (MediaPipe Pose) on `image`."),
        DeclareLaunchArgument("video", default_value="",
                              description="Video file to play with video_source (empty: none)."),
        DeclareLaunchArgument("loop", default_value="false",
                              description="video_source: play the video again and again."),
        DeclareLaunchArgument("scale", default_value="1.0",
                              description="video_source: resize factor of the frames."),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="Start RViz with rviz/skeleton.rviz (needs rviz2)."),
        DeclareLaunchArgument("model", default_value="",
                              description=params.SPECS["model_path"].description
                              + " Empty: model_path of config/lifter.yaml."),
        OpaqueFunction(function=launch_setup),
    ])
