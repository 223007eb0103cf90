"""placeholder"""

def run(quick):
    return {"skipped": "not written yet"}
