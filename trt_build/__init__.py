"""ONNX -> FP16 TensorRT engines built on the device, engine cache manifest, parity checks."""
