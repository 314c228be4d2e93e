"""What a task is: the module the trainer steps, how it is judged, and its metrics.

Only the scripts and this package know datasets and models together; the engine knows neither.
"""
