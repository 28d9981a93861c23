"""
What a ``vton_soak`` run found, without ROS: goal outcomes by cause, leaks, crashes, a plot.

A run record (the JSON the tool writes) holds ``goals`` (one dict per goal the clients
sent: ``id``, ``cause``, ``accepted``, ``code``, ``t_start``, ``t_end``), ``server_ends``
(goal id prefix -> code name, from the server's own log), ``kills`` (``t``, ``node``,
``pid``), ``exits`` (``node``, ``code`` of every node exit the supervisor saw) and
``samples`` (``t``, ``node``, ``pid``, ``rss_mb``, ``fds``, ``threads``, ``goals_done``).
A goal whose acceptance was read from the status topic has ``from_status`` true;
``goal_replies_missing`` holds the ids of those whose reply never came.
A goal request that got no response at all carries a ``note`` saying why; ``server_restarts``
(``t`` of each server kill, ``up`` when the clients saw the new server) tells a request
sent while the server was down (LOST) from one a live server never answered (NO_RESPONSE).
"""

from collections import Counter, defaultdict
from typing import Any

import numpy as np

KILLED = -9  # exit code of a SIGKILLed process
WARM_UP = 0.5  # share of a process's goals before its leak figures start
MIN_STEADY_GOALS = 100  # a shorter steady window gives no slope (None: too short to judge)
MIN_STEADY_S = 60.0


def unanswered(record: dict[str, Any]) -> list[dict[str, Any]]:
    """
    Return the accepted goals without an answer: no result, no end in the server's log.

    A goal whose server process was killed while it ran cannot be answered: it counts as
    ``lost`` (see :func:`summarize`), not here. A goal whose client vanished is answered
    when the server logged its end.
    """
    out = []
    for goal in record['goals']:
        if not goal['accepted'] or goal.get('code') or goal['id'][:8] in record['server_ends']:
            continue
        if not _server_killed_during(record, goal):
            out.append(goal)
    return out


def _server_killed_during(record: dict[str, Any], goal: dict[str, Any]) -> bool:
    end = goal.get('t_end') or float('inf')  # a vanished client never saw the end
    return any(k['node'] == 'tryon_server' and goal['t_start'] <= k['t'] <= end
               for k in record['kills'])


def _server_down_during(record: dict[str, Any], goal: dict[str, Any]) -> bool:
    """Whether the server was killed, or not yet back from a kill, while the goal waited."""
    end = goal.get('t_end') or float('inf')
    for restart in record.get('server_restarts', []):
        up = restart.get('up') or float('inf')  # never seen back (the run ended)
        if restart['t'] <= end and goal['t_start'] <= up:
            return True
    return _server_killed_during(record, goal)


def outcome(record: dict[str, Any], goal: dict[str, Any]) -> str:
    """
    One word for a goal's fate: its code name, REJECTED, NO_RESPONSE, LOST or UNANSWERED.

    A goal request without any response (its ``note`` says so) is NO_RESPONSE, never
    REJECTED; so is an accepted goal whose live client got no result (even if the server's
    log ended it); LOST if the server was killed while it waited.
    """
    if not goal['accepted']:
        if not goal.get('note'):
            return 'REJECTED'
        return 'LOST' if _server_down_during(record, goal) else 'NO_RESPONSE'
    if goal.get('code'):
        return goal['code']
    if goal.get('note'):  # its client waited for the result in vain (the server may have ended it)
        return 'LOST' if _server_down_during(record, goal) else 'NO_RESPONSE'
    if goal['id'][:8] in record['server_ends']:
        return record['server_ends'][goal['id'][:8]]
    return 'LOST' if _server_killed_during(record, goal) else 'UNANSWERED'


def slope_per_100(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (goals done, value) in value per 100 goals (None: too few)."""
    xs = np.array([p[0] for p in points], float)
    if len(points) < 3 or xs.max() - xs.min() < 10:
        return None
    return float(np.polyfit(xs, np.array([p[1] for p in points], float), 1)[0] * 100)


def node_figures(record: dict[str, Any], node: str, hold_s: float = 0.0) -> dict[str, Any]:
    """
    Per node: processes seen, and the leak figures of its longest-lived process.

    For the process that lived longest once up: its RSS, fds and threads after warm-up and
    at its end, and their least-squares slopes per 100 goals (goals sent by all clients,
    rejected ones included) over that steady window. Start-up (imports,
    model loading) lasts until the process has its most open fds (its DDS participant and
    node are up); warm-up then lasts for the first WARM_UP of its goals (allocator, caches)
    and at least ``hold_s`` seconds (tryon_server keeps every finished goal, its request
    and result images, for ``tryon.result_timeout`` s: its memory grows that long by
    design). Neither is a leak. A window shorter than MIN_STEADY_GOALS goals or
    MIN_STEADY_S seconds gives no slopes (None). Samples of an exiting process (no RSS)
    are left out.
    """
    samples = [s for s in record['samples'] if s['node'] == node and s['rss_mb'] > 0]
    if not samples:
        return {'processes': 0}
    by_pid = defaultdict(list)
    for s in samples:
        by_pid[s['pid']].append(s)

    def up(process: list[dict[str, Any]]) -> list[dict[str, Any]]:
        top = max(s['fds'] for s in process)
        return process[next(i for i, s in enumerate(process) if s['fds'] == top):]

    longest = max((up(ss) for ss in by_pid.values()), key=lambda ss: ss[-1]['t'] - ss[0]['t'])
    done = [s['goals_done'] for s in longest]
    warm = done[0] + (done[-1] - done[0]) * WARM_UP
    steady = [s for s in longest if s['goals_done'] >= warm and
              s['t'] >= longest[0]['t'] + hold_s] or longest[-1:]
    keys = ('rss_mb', 'fds', 'threads')
    goals = steady[-1]['goals_done'] - steady[0]['goals_done']
    seconds = steady[-1]['t'] - steady[0]['t']
    judged = goals >= MIN_STEADY_GOALS and seconds >= MIN_STEADY_S
    return {
        'processes': len(by_pid),
        'start': {k: steady[0][k] for k in keys},
        'end': {k: steady[-1][k] for k in keys},
        'longest_process_goals': done[-1] - done[0],
        'longest_process_s': round(longest[-1]['t'] - longest[0]['t'], 1),
        'steady_goals': goals,
        'steady_s': round(seconds, 1),
        'steady_from_goal': steady[0]['goals_done'],
        **{f'{k.removesuffix("_mb")}{"_mb" if k == "rss_mb" else ""}_per_100_goals':
           slope_per_100([(s['goals_done'], s[k]) for s in steady]) if judged else None
           for k in keys},
    }


def crashes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Node exits that the soak did not cause (a code other than SIGKILL, or one too many)."""
    kills = Counter(k['node'] for k in record['kills'])
    out = []
    for exit_ in record['exits']:
        if exit_['code'] == KILLED and kills[exit_['node']] > 0:
            kills[exit_['node']] -= 1
        else:
            out.append(exit_)
    return out


def shm_figures(samples: list[dict[str, Any]]) -> dict[str, float] | None:
    """Fast DDS /dev/shm use (MB) at the start, the end and its maximum over the run."""
    if not samples:
        return None
    return {'start': samples[0]['mb'], 'end': samples[-1]['mb'],
            'max': max(s['mb'] for s in samples)}


def after_kill_figures(record: dict[str, Any]) -> dict[str, Any]:
    """Each client's first goal after a server kill: how many, and those not SUCCESS."""
    checks = [g for g in record['goals'] if g['cause'] == 'after_server_kill']
    return {'goals': len(checks),
            'failed': [{'index': g['index'], 'outcome': outcome(record, g),
                        'note': g.get('note', '')}
                       for g in checks if outcome(record, g) != 'SUCCESS']}


def first_goal_figures(record: dict[str, Any]) -> dict[str, int]:
    """First goals of the clients made after one vanished (new participants): sent, NO_RESPONSE."""
    first = [g for g in record['goals'] if g.get('client_goal') == 0 and
             g.get('client', '').count('_') > 2]  # soak_client_<n>_<index>: a replacement
    return {'sent': len(first),
            'no_response': sum(outcome(record, g) == 'NO_RESPONSE' for g in first)}


def summarize(record: dict[str, Any], nodes: tuple[str, ...]) -> dict[str, Any]:
    """Return the figures a soak reports (goals by cause and code, leaks, crashes)."""
    by_cause: dict[str, Counter] = defaultdict(Counter)
    for goal in record['goals']:
        by_cause[goal['cause']][outcome(record, goal)] += 1
    accepted = [g for g in record['goals'] if g['accepted']]
    missing = unanswered(record)
    return {
        'goals': len(record['goals']),
        'accepted': len(accepted),
        'answered': sum(outcome(record, g) not in ('LOST', 'UNANSWERED', 'NO_RESPONSE')
                        for g in accepted),
        'lost_to_server_kills': sum(outcome(record, g) == 'LOST' for g in accepted),
        'unanswered': [g['id'] for g in missing],
        'no_response': [g['index'] for g in record['goals']
                        if outcome(record, g) == 'NO_RESPONSE'],
        'first_goals_of_new_clients': first_goal_figures(record),
        # accepted goals whose acceptance was read from the status topic before (or without)
        # their reply; those whose reply never came (by their client's end)
        'accepted_from_status': [g['index'] for g in record['goals'] if g.get('from_status')],
        'goal_replies_missing': [g['index'] for g in record['goals']
                                 if g['id'] in record.get('goal_replies_missing', ())],
        'after_server_kill': after_kill_figures(record),
        'codes_by_cause': {cause: dict(sorted(c.items())) for cause, c in
                           sorted(by_cause.items())},
        'kills': dict(Counter(k['node'] for k in record['kills'])),
        'crashes': crashes(record),
        'warm_up_s': record.get('warm_up_s', 0.0),
        'nodes': {node: node_figures(record, node, record.get('warm_up_s', 0.0))
                  for node in nodes},
        'dds_shm_mb': shm_figures(record.get('dds_shm', [])),
        'dds_shm_after_stop_mb': record.get('dds_shm_after_stop_mb'),
        'dds_ports_after_stop_kb': record.get('dds_ports_after_stop_kb'),
        'supervisor_exit_code': record.get('supervisor_exit_code'),
        'stop_notes': record.get('stop_notes', []),
    }


def plot(record: dict[str, Any], nodes: tuple[str, ...], path: str) -> None:
    """Write a PNG: RSS, open fds and threads of each node over the run, kills marked."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    t0 = min([s['t'] for s in record['samples']] or [0.0])
    fig, axes = pyplot.subplots(3, 1, figsize=(10, 9), sharex=True)
    for ax, key, label in zip(axes, ('rss_mb', 'fds', 'threads'),
                              ('RSS (MiB)', 'open fds', 'threads')):
        for node in nodes:
            for pid in dict.fromkeys(s['pid'] for s in record['samples'] if s['node'] == node):
                points = [s for s in record['samples'] if s['pid'] == pid]
                ax.plot([s['t'] - t0 for s in points], [s[key] for s in points],
                        color=f'C{nodes.index(node)}', label=node)
        for kill in record['kills']:
            ax.axvline(kill['t'] - t0, color=f'C{nodes.index(kill["node"])}', alpha=0.4,
                       linestyle='--')
        ax.set_ylabel(label)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), loc='upper left')
    axes[0].set_title(f'vton_soak: {len(record["goals"])} goals; dashed lines: SIGKILL')
    axes[-1].set_xlabel('seconds')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    pyplot.close(fig)
