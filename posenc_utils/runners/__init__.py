"""Runners: the study's commands: the plan, the pipeline that runs every notebook, the probe of any model."""
