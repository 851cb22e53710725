"""The demo page's gradio modules (`app.py` assembles them): the tabs' layouts, their event handlers, the one error
wrapper, the stylesheet and the examples. Everything they compute comes from `time_core.demo`."""
