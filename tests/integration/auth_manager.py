"""An auth manager with per-DAG permissions for the job page's authorisation test: Airflow's
SimpleAuthManager, except that the user OUTSIDER may not read the DAG HIDDEN_DAG (SimpleAuthManager
itself grants by role only, and `airflow standalone` always uses it)."""

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

OUTSIDER = "outsider"
HIDDEN_DAG = "tf_job_page"


class DagHidingAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.get_name() == OUTSIDER and details is not None and details.id == HIDDEN_DAG:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
