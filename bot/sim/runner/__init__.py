"""The simulated cc-ci harness, laid out as the real one is: `runner/run_recipe_ci.py`."""
