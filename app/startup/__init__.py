"""What happens when a `Runtime` starts and serves, kept out of the composition root (`app.runtime`):

- `serving`: uvicorn until stopped, the exposure warnings, the start-up log line and browser, the warm-up;
- `data_folder`: the cheap start-up scans of the data folder (any checkpoint yet? temp files of interrupted writes).

Neither imports the runtime back: they take it (or its paths and settings) as arguments.
"""
