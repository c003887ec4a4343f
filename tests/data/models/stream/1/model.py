"""Decoupled model: streams the words of PROMPT back one response at a time, like token generation."""

import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            prompt = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy().reshape(-1)[0]
            words = (prompt.decode() if isinstance(prompt, bytes) else str(prompt)).split()
            for i, word in enumerate(words):
                token = (word if i == 0 else " " + word).encode()
                sender.send(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("TOKEN", np.array([token], dtype=np.object_)),
                    pb_utils.Tensor("INDEX", np.array([i], dtype=np.int32)),
                ]))
                time.sleep(0.005)
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
