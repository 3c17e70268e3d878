"""The backend WORKER_MODE_BACKEND names, checked against the variables it needs."""

from __future__ import annotations

from bot.config import Settings
from bot.deploy.base import Backend
from bot.errors import ConfigError


def backend_for(settings: Settings) -> Backend:
    if settings.worker_mode_backend == "dotenv":
        from bot.deploy.dotenv import DotenvBackend

        if settings.worker_mode_dotenv is None:
            raise ConfigError("WORKER_MODE_DOTENV: set it to the .env file the app reads")
        return DotenvBackend(settings.worker_mode_dotenv)
    if settings.worker_mode_backend == "apprunner":
        from bot.deploy.apprunner import AppRunnerBackend

        if not settings.apprunner_service_arn:
            raise ConfigError("APPRUNNER_SERVICE_ARN: set it to the App Runner service's ARN")
        try:
            return AppRunnerBackend.from_settings(
                settings.apprunner_service_arn, settings.aws_region
            )
        except ImportError:
            raise ConfigError(
                "WORKER_MODE_BACKEND: apprunner needs boto3: pip install 'queueops[aws]'"
            ) from None
    from bot.deploy.none import NoneBackend

    return NoneBackend()
