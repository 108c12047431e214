"""The Kubernetes Pod Security Standards, as a checker for the pods Proctor builds.

A pod template is checked against the `baseline` or `restricted` profile, control by control, as
https://kubernetes.io/docs/concepts/security/pod-security-standards/ lists them (v1.33): what
Pod Security Admission would refuse in a namespace labelled
`pod-security.kubernetes.io/enforce: <level>`. Each violation is a sentence naming the control,
the container and the field, so a failing test says what to fix.
"""

from __future__ import annotations

from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
VOLUME_SOURCES = RESTRICTED_VOLUMES | {
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "photonPersistentDisk",
    "image",
}
LEVELS = ("baseline", "restricted")


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{field}[{c.get('name', index)}]", c)
        for field in ("initContainers", "containers", "ephemeralContainers")
        for index, c in enumerate(spec.get(field) or [])
    ]


def violations(template: dict[str, Any], level: str = "restricted") -> list[str]:
    """What `template` (a pod, or a Job's spec.template: metadata and spec) breaks of `level`."""
    assert level in LEVELS, level
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    containers = _containers(spec)
    found: list[str] = []

    # ---- baseline ------------------------------------------------------------------------
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("HostProcess: spec.securityContext.windowsOptions.hostProcess is set")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"Host namespaces: spec.{field} is true")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"HostPath volumes: volume {volume.get('name')} is a hostPath")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"Sysctls: {sysctl.get('name')} is not a safe sysctl")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            found.append(f"AppArmor: annotation {key}={value}")
    found += _apparmor(pod_sc, "spec.securityContext")
    found += _selinux(pod_sc, "spec.securityContext")
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("Seccomp: spec.securityContext.seccompProfile is Unconfined")
    for where, container in containers:
        sc = container.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"HostProcess: {where} sets windowsOptions.hostProcess")
        if sc.get("privileged"):
            found.append(f"Privileged: {where} is privileged")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"Capabilities: {where} adds {sorted(added - BASELINE_CAPABILITIES)}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"Host ports: {where} publishes hostPort {port['hostPort']}")
        found += _apparmor(sc, f"{where}.securityContext")
        found += _selinux(sc, f"{where}.securityContext")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"/proc mount type: {where} sets procMount {sc['procMount']}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"Seccomp: {where} seccompProfile is Unconfined")
    if level == "baseline":
        return found

    # ---- restricted ----------------------------------------------------------------------
    for volume in spec.get("volumes") or []:
        kinds = set(volume) & VOLUME_SOURCES
        unknown = set(volume) - {"name"} - VOLUME_SOURCES
        if kinds - RESTRICTED_VOLUMES or unknown:
            found.append(
                f"Volume types: volume {volume.get('name')} is {sorted(kinds | unknown)}, "
                f"not one of {sorted(RESTRICTED_VOLUMES)}"
            )
    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        found.append("Running as non-root user: spec.securityContext.runAsUser is 0")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"Seccomp: spec.securityContext.seccompProfile is {pod_seccomp}")
    for where, container in containers:
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(
                f"Privilege escalation: {where} does not set allowPrivilegeEscalation false"
            )
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_non_root is not True):
            found.append(f"Running as non-root: neither {where} nor the pod sets runAsNonRoot true")
        if sc.get("runAsUser") == 0:
            found.append(f"Running as non-root user: {where} sets runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp is None:
            found.append(f"Seccomp: neither {where} nor the pod sets a seccompProfile")
        elif seccomp not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"Seccomp: {where} seccompProfile is {seccomp}")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"Capabilities: {where} does not drop ALL")
        added = set(capabilities.get("add") or [])
        if added - RESTRICTED_CAPABILITIES:
            found.append(f"Capabilities: {where} adds {sorted(added - RESTRICTED_CAPABILITIES)}")
    return found


def _apparmor(sc: dict[str, Any], where: str) -> list[str]:
    kind = (sc.get("appArmorProfile") or {}).get("type")
    if kind not in (None, "RuntimeDefault", "Localhost"):
        return [f"AppArmor: {where}.appArmorProfile is {kind}"]
    return []


def _selinux(sc: dict[str, Any], where: str) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    found = []
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"SELinux: {where}.seLinuxOptions.type is {options['type']}")
    for field in ("user", "role"):
        if options.get(field):
            found.append(f"SELinux: {where}.seLinuxOptions.{field} is set")
    return found


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates an object makes: a Job's template, a Pod itself; none for the rest."""
    if obj.get("kind") == "Job":
        return [obj["spec"]["template"]]
    if obj.get("kind") == "Pod":
        return [obj]
    return []
