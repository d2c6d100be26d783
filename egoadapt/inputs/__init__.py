"""What turns a sample into a prompt and model inputs, below `train/`, `rollout/` and `eval/`.

`qa`: the QA types (close/open) and their prompt names; `encode`: a clip's processor vision
inputs through the input cache; `video.VideoInputs`: messages, prompt ids and collated vision
tensors of a sample; `context`: prompt lengths in tokens from frame headers, before any pixel
is processed. May import `egoadapt.data`, `egoadapt.models`, `egoadapt.files` and
`egoadapt.configs`; never `train`, `rollout`, `eval` or the CLI.
"""
