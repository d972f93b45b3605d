"""kairos_sim: the simulated robot (Meta-World on MuJoCo) used for demonstrations, closed-loop
evaluation and the sim_robot ROS node. Its own package: training and kairos_ros both use it, and
neither the robot runtime (kairos_model) nor the node layer depends on training code."""
