"""`faregate doctor`: the failure decision tree, the cost traps and the pre-launch security
checklist, as named findings (``findings.Finding``), each with a severity and its fix."""
