"""Point-cloud and image models. Points are (B, N, C) at every boundary; models do no I/O."""

from models.adacrossnet import AdaCrossNet
from models.build import build_model
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg, EdgeConv, knn
from models.image_encoder import ImageEncoder
from models.pointnet import PointNet

__all__ = ["AdaCrossNet", "build_model", "DGCNN", "DGCNNPartSeg", "DGCNNPartSegEncoder", "DGCNNSemSeg",
           "EdgeConv", "knn", "ImageEncoder", "PointNet"]
