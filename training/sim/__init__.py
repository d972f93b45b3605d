"""Simulated robots for demonstrations, closed-loop evaluation and the sim_robot ROS node."""
