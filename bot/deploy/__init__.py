"""Deployment backends: where the app's WORKER_INPROCESS and drain tokens live.

`apprunner` (AWS App Runner, boto3), `dotenv` (a .env file), `none` (report only). Each
reads the whole set of variables and writes a changed set back without losing any other
variable (App Runner's update-service replaces the whole set)."""
