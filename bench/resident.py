"""Resident memory of this process, as `pretext bench step` reports it: the resident set before
the first step, its high-water mark over the run, and their difference (what the steps need,
without libtorch's own large baseline). Linux only; elsewhere the fields are left out."""


def _status_mib(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_mib():
    return _status_mib("VmRSS:")


def fields(before_mib):
    """The three memory fields of a result line, given `current_mib()` from before the run."""
    peak = _status_mib("VmHWM:")
    if before_mib is None or peak is None:
        return {}
    return {"rss_before_mib": before_mib, "peak_rss_mib": peak, "step_mib": peak - before_mib}
