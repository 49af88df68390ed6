"""The command line sphinx-gallery runs each example with (``reset_argv`` in docs/conf.py).

``--show`` keeps each figure open for the gallery's matplotlib scraper (pyplot's ``show`` is
a no-op under the Agg backend the gallery uses); ``--out`` sends the script's own PNG copy to
a folder of the temporary directory, outside the source tree.
"""

import os
import tempfile

FIGURES = os.path.join(tempfile.gettempdir(), "fastnn-gallery")


def reset_argv(gallery_conf, script_vars):
    return ["--show", "--out", FIGURES]
