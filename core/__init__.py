"""Alliance Monitor's clinical logic: pure functions over pandas DataFrames.

No streamlit and no sqlalchemy here (``tests/test_architecture.py`` enforces it); the
database layer (``db/``) hands frames in the column contract below and ``core`` never sees
an ORM object.

Column contract
---------------
Scores frame (one row per patient, instrument and week; long format):

=================  ==========  ======================================================
column             dtype       meaning
=================  ==========  ======================================================
patient_id         str         clinic code (pseudonym), e.g. ``P00042``
therapist_id       str / NA    account name of the patient's therapist
instrument         str         registry code (``WAI-SR``, ``WAI-P``, ``SPIN``, ...)
week               int64       treatment week, >= 1
score              float64     total score in the instrument's units
administered_on    date / NA   optional
item_1 ... item_K  float64     optional item responses, NaN where absent
=================  ==========  ======================================================

A missing week is an absent row, never a zero. Functions take the frame first and
everything else keyword-only, and never mutate their input.
"""
