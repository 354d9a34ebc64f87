"""The planner's decisions, one module per group of settings. Each function reads the PlanContext and the
values decided before it (the Draft), writes its values with their reasons, and returns what a later
decision needs beyond them; easytune.plan.planner calls them in dependency order."""
