"""Camera capture: OpenCV webcam, Basler via pypylon, directory replay."""
