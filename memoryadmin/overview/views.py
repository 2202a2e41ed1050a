def overview(r):
    pass


measure = run_detail = run_cancel = overview
