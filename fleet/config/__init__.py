"""Stack configuration: the validated model (model.py) and how it is read from Pulumi (pulumi_source.py)."""
