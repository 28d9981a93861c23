"""What the mirror page says: one sentence a shopper understands per state and error code."""

# TryOn.Result error code names -> what the shopper reads.
ERRORS = {
    'INVALID_IMAGE': 'That picture cannot be used. Please try a different photo.',
    'INVALID_ARGUMENT': 'That garment cannot be tried on. Please pick another one.',
    'UNKNOWN_GARMENT': 'That garment is no longer available. Please pick another one.',
    'NO_PERSON_FRAME': 'The camera is not sending a picture. Please ask a member of staff.',
    'CANCELED': 'Try-on cancelled.',
    'OUT_OF_MEMORY': 'The mirror ran out of memory. Please try again.',
    'PIPELINE_ERROR': 'Something went wrong. Please try again.',
    'PREEMPTED': 'Someone else started a try-on. Please try again in a moment.',
    'NO_PERSON_DETECTED': 'Step in front of the mirror.',
    'SHUTTING_DOWN': 'The mirror is restarting. Please wait a moment.',
    'TIMED_OUT': 'That took too long. Please try again.',
    'CLIENT_GONE': 'The mirror lost its connection to that try-on. Please try again.',
    'REJECTED': 'The mirror is busy. Please try again in a moment.',
    'UNKNOWN': 'The mirror lost track of that try-on. Please try again.',
    'NO_ANSWER': 'The mirror did not answer in time. Please try again.',  # the page's own
}
FALLBACK = 'Something went wrong. Please try again.'

# Session states -> the status line.
STATES = {
    'idle': 'Pick a garment to try it on.',
    'sending': 'Getting ready…',
    'running': 'Trying it on…',
    'canceling': 'Cancelling…',
    'result': 'Here you are. Pick another garment to compare.',
    'offline': 'The mirror is starting. Please wait a moment.',
    'busy': 'Please wait: a try-on is already running.',
    'no_frame': 'Please wait for the camera.',
}


def error_sentence(code: str) -> str:
    """Return the shopper's sentence for a TryOn.Result error code name."""
    return ERRORS.get(code, FALLBACK)


def state_sentence(state: str) -> str:
    """Return the status line of a session state."""
    return STATES[state]
