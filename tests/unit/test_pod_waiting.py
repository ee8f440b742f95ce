"""A helper pod that does not finish says why, in the kubelet's words (one line)."""

from __future__ import annotations

from migrate.backends.kubernetes.mapping import pod_waiting


def test_an_image_that_cannot_be_pulled_is_named():
    pod = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "probe",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "registry.k8s.io/e2e-test-images/agnhost:2.52"\n',
                        }
                    },
                }
            ],
        }
    }
    assert pod_waiting(pod) == (
        ': waiting: ImagePullBackOff (Back-off pulling image "registry.k8s.io/e2e-test-images/agnhost:2.52")'
    )


def test_an_unscheduled_pod_says_so_and_a_silent_one_gives_its_phase():
    unscheduled = {
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/4 nodes are available"}],
        }
    }
    assert pod_waiting(unscheduled) == ": not scheduled: 0/4 nodes are available"
    assert pod_waiting({"status": {"phase": "Running"}}) == " (phase Running)"
    assert pod_waiting({"metadata": {}}) == ""
