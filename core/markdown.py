"""Text that users typed (notes, names, file names, patient codes), made safe to show inside
Streamlit Markdown: it reads as typed and is never formatted, linked or fetched.

Streamlit renders every ``st.markdown``/``st.caption``/``st.success``… string as Markdown with its
own extensions: ``![](http://…)`` fetches an image (a tracking pixel that tells an outsider who
looked at a patient, and when), ``:red[…]`` and ``**…**`` style text like the app's own warnings,
``$…$`` is LaTeX and ``:name:`` an emoji or icon. :func:`text` backslash-escapes every ASCII
punctuation character (CommonMark: a backslash before ASCII punctuation is that character,
literally) and puts an invisible word joiner (U+2060) into ``://`` and ``www.``, which GitHub
Markdown would otherwise turn into links by their text alone. What the viewer sees is the typed
text, character for character.

The app's own sentences stay Markdown; only the user's parts go through :func:`text`::

    st.success(f"Addressed in feedback by {text(note_by)}: {text(note)}")
"""

from __future__ import annotations

import string

__all__ = ["text"]

_ESCAPE = str.maketrans({c: "\\" + c for c in string.punctuation})
_JOINER = "\u2060"


def text(value: object) -> str:
    """``value`` as a string that Markdown shows exactly as typed (see the module docstring)."""
    raw = "" if value is None else str(value)
    raw = raw.replace("://", f":{_JOINER}//").replace("www.", f"www{_JOINER}.").replace("WWW.", f"WWW{_JOINER}.")
    return raw.translate(_ESCAPE)
