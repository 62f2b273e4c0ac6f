"""Checks of the pip options: ``pip_packages`` holds PEP 508 requirements and nothing else; where
they come from is said with ``pip_index_url`` / ``pip_extra_index_urls`` / ``pip_trusted_hosts``.

pip reads an argument that starts with ``-`` as an option, so before this check
``pip_packages=["--index-url=http://mirror", "numpy"]`` or ``["-e", "."]`` reached pip as options
(a different index, an editable install of whatever ``.`` is on the node). Now every entry must
parse as a requirement (``packaging.requirements.Requirement``, imported on first use), and an
option gets a message saying which setting to use instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow_tf.cluster.checks import check_name, check_no_nul, check_string_list, describe
from airflow_tf.cluster.errors import SpecError
from airflow_tf.runtime.packages import redact

# pip option -> what to write instead.
INSTEAD = {
    "-i": "use pip_index_url={value!r}",
    "--index-url": "use pip_index_url={value!r}",
    "--extra-index-url": "use pip_extra_index_urls=[{value!r}]",
    "--trusted-host": "use pip_trusted_hosts=[{value!r}]",
    "-e": ("editable installs are not supported: build a wheel and list it as 'name @ file:///path/name.whl' "
           "(or publish it to an index), or ship the code in source_directory (the ranks' working directory)"),
    "--editable": "editable installs are not supported (see -e)",
    "-r": "list the requirements themselves, one per entry",
    "--requirement": "list the requirements themselves, one per entry",
    "-c": "pin the requirements themselves ('numpy==1.26.4') instead of a constraints file",
    "--constraint": "pin the requirements themselves ('numpy==1.26.4') instead of a constraints file",
}
URL_SCHEMES = ("https", "http", "file")


def _option_message(field: str, index: int, items: list[str]) -> str:
    item = items[index]
    name, eq, value = item.partition("=")
    if not eq and name in INSTEAD and index + 1 < len(items):
        value = items[index + 1]  # ["--index-url", "https://..."]
    instead = INSTEAD.get(name, "pip options have settings of their own: pip_index_url, pip_extra_index_urls, "
                                "pip_trusted_hosts")
    return (f"{field}[{index}] is a pip option ({redact(item)!r}), not a requirement: pip_packages takes PEP 508 "
            f"requirements only (such as 'numpy>=1.26'); {instead.format(value=redact(value or '...'))}")


def check_pip_packages(value: Any) -> list[str]:
    items = check_string_list("pip_packages", value)
    if not items:
        return items
    from packaging.requirements import InvalidRequirement, Requirement  # only DAGs with packages pay for it

    for i, item in enumerate(items):
        if item.lstrip().startswith("-"):
            raise SpecError(_option_message("pip_packages", i, items))
        try:
            Requirement(item)
        except InvalidRequirement as exc:
            hint = ""
            if "://" in item or item.startswith((".", "/")):
                hint = "; for a URL or file write 'name @ https://host/name-1.0-py3-none-any.whl'"
            raise SpecError(f"pip_packages[{i}] must be a PEP 508 requirement such as 'numpy>=1.26' or "
                            f"'name @ URL'{hint}, got {redact(item)!r} ({str(exc).splitlines()[0]})") from None
    return items


def check_pip_url(field: str, value: Any) -> str:
    """An index URL: https:// (or http://, file://), no spaces. Credentials in it are allowed
    and redacted wherever airflow-tf logs it (see docs/security.md for where they still show)."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise SpecError(f"{field} must be an index URL such as 'https://pypi.example.org/simple', got {describe(value)}")
    check_no_nul(field, value)
    parts = urlsplit(value)
    if parts.scheme not in URL_SCHEMES or not (parts.netloc if parts.scheme != "file" else parts.path):
        raise SpecError(f"{field} must be an https://, http:// or file:// URL such as "
                        f"'https://pypi.example.org/simple', got {redact(value)!r}")
    return value


def check_pip_urls(field: str, value: Any) -> list[str]:
    return [check_pip_url(f"{field}[{i}]", url) for i, url in enumerate(check_string_list(field, value))]


def check_pip_hosts(value: Any) -> list[str]:
    hosts = check_string_list("pip_trusted_hosts", value)
    for i, host in enumerate(hosts):
        check_name(f"pip_trusted_hosts[{i}]", host, "a host name or host:port (pip's --trusted-host)", allowed="._-:")
    return hosts
