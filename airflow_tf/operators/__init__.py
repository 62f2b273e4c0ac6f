"""The Airflow layer: training groups and the operators they expand into."""
