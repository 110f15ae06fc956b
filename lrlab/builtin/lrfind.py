"""The LR finder's report section (lrlab_report_sections). Not yet built."""
