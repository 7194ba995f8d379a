"""The iterU-Net model, its typed configuration and the Med3D feature extractor (re-exports only)."""

from iterdce.network.config import CONFIG_KEYS, ModelConfig, NetworkConfig
from iterdce.network.convlstm import ConvLSTMCell3D, LSTMState
from iterdce.network.iterunet import IterUNet, build_network
from iterdce.network.med3d import Med3DFeatures, Med3DWeightsError, ResNet10, load_med3d_weights
from iterdce.network.time_embedding import TimeEmbedding, sinusoidal_encoding

__all__ = [
    "CONFIG_KEYS",
    "ConvLSTMCell3D",
    "IterUNet",
    "LSTMState",
    "Med3DFeatures",
    "Med3DWeightsError",
    "ModelConfig",
    "NetworkConfig",
    "ResNet10",
    "TimeEmbedding",
    "build_network",
    "load_med3d_weights",
    "sinusoidal_encoding",
]
