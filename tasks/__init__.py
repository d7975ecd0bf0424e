"""Pipeline stages as plain functions, each with a Prefect @task entry point."""
