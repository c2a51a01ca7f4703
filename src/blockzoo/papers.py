"""Bibliographic records of the papers blockzoo implements, shared by blocks and models.

``id`` is the inventory id in ``shared/reference/papers.md`` (S001..S109); baselines the inventory does not list
(ResNet, SENet, CBAM, non-local, BatchNorm ...) have ``id=None``. Block and model files cite these records in the
registry; every record lives here (never in a block or model file).
"""
from __future__ import annotations

from blockzoo.registry import Paper

# Baselines (not in the inventory)
RESNET = Paper("Deep Residual Learning for Image Recognition", 2016, "CVPR", "1512.03385", authors="He et al.")
RESNEXT = Paper("Aggregated Residual Transformations for Deep Neural Networks", 2017, "CVPR", "1611.05431",
                authors="Xie et al.")
SENET = Paper("Squeeze-and-Excitation Networks", 2018, "CVPR", "1709.01507", authors="Hu et al.")
CBAM = Paper("CBAM: Convolutional Block Attention Module", 2018, "ECCV", "1807.06521", authors="Woo et al.")
NONLOCAL = Paper("Non-local Neural Networks", 2018, "CVPR", "1711.07971", authors="Wang et al.")
BATCHNORM = Paper("Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift", 2015,
                  "ICML", "1502.03167", authors="Ioffe & Szegedy")
GROUPNORM = Paper("Group Normalization", 2018, "ECCV", "1803.08494", authors="Wu & He")
LAYERNORM = Paper("Layer Normalization", 2016, "arXiv", "1607.06450", authors="Ba et al.")
GELU = Paper("Gaussian Error Linear Units (GELUs)", 2016, "arXiv", "1606.08415", authors="Hendrycks & Gimpel")
SILU = Paper("Searching for Activation Functions", 2017, "arXiv", "1710.05941", authors="Ramachandran et al.")
MOBILENETV3 = Paper("Searching for MobileNetV3", 2019, "ICCV", "1905.02244", authors="Howard et al.")
ISQRTCOV = Paper("Towards Faster Training of Global Covariance Pooling Networks by Iterative Matrix Square Root "
                 "Normalization", 2018, "CVPR", "1712.01034", authors="Li et al.")
VIT = Paper("An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", 2021, "ICLR", "2010.11929",
            url="https://github.com/google-research/vision_transformer", authors="Dosovitskiy et al.")
DEIT = Paper("Training data-efficient image transformers & distillation through attention", 2021, "ICML", "2012.12877",
             url="https://github.com/facebookresearch/deit", authors="Touvron et al.")

# Inventory papers (ids from papers.md)
ECA = Paper("ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks", 2020, "CVPR", "1910.03151",
            id="S003", url="https://github.com/BangguWu/ECANet", authors="Wang et al.")
GCP = Paper("What Deep CNNs Benefit from Global Covariance Pooling: An Optimization Perspective", 2020, "CVPR",
            "2003.11241", id="S002", authors="Wang et al.")
COORD = Paper("Coordinate Attention for Efficient Mobile Network Design", 2021, "CVPR", "2103.02907", id="S034",
              url="https://github.com/Andrew-Qibin/CoordAttention", authors="Hou et al.")
SCSE = Paper("Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks", 2018, "MICCAI",
             "1803.02579", id="S061", authors="Roy et al.")
GHOSTNETV2 = Paper("GhostNetV2: Enhance Cheap Operation with Long-Range Attention", 2022, "NeurIPS", "2211.12905",
                   id="S042", authors="Tang et al.")
SOFTMAX_FREE_NL = Paper("Rethinking Efficacy of Softmax for Lightweight Non-Local Neural Networks", 2022, "ICIP",
                        "2207.13423", id="S092", url="https://github.com/YooshinCho/pytorch_RethinkingSFM",
                        authors="Cho et al.")
SKNET = Paper("Selective Kernel Networks", 2019, "CVPR", "1903.06586", id="S097", url="https://github.com/implus/SKNet",
              authors="Li et al.")
RESATTNET = Paper("Residual Attention Network for Image Classification", 2017, "CVPR", "1704.06904", id="S105",
                  authors="Wang et al.")
MOBILENETV2 = Paper("MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018, "CVPR", "1801.04381", id="S071",
                    authors="Sandler et al.")
WRN = Paper("Wide Residual Networks", 2016, "BMVC", "1605.07146", id="S091",
            url="https://github.com/szagoruyko/wide-residual-networks", authors="Zagoruyko & Komodakis")
ELU = Paper("Fast and Accurate Deep Network Learning by Exponential Linear Units (ELUs)", 2016, "ICLR", "1511.07289",
            id="S109", authors="Clevert et al.")
CONVNEXT = Paper("A ConvNet for the 2020s", 2022, "CVPR", "2201.03545", id="S057", authors="Liu et al.")
INCEPTIONNEXT = Paper("InceptionNeXt: When Inception Meets ConvNeXt", 2024, "CVPR", "2303.16900", id="S014",
                      url="https://github.com/sail-sg/inceptionnext", authors="Yu et al.")
HORNET = Paper("HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions", 2022, "NeurIPS",
               "2207.14284", id="S013", url="https://github.com/raoyongming/HorNet", authors="Rao et al.")
UNIREPLKNET = Paper("UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, "
                    "Time-Series and Image Recognition", 2024, "CVPR", "2311.15599", id="S084",
                    url="https://github.com/AILab-CVC/UniRepLKNet", authors="Ding et al.")
POOLFORMER = Paper("MetaFormer Is Actually What You Need for Vision", 2022, "CVPR", "2111.11418",
                   url="https://github.com/sail-sg/poolformer", authors="Yu et al.")
PFLAYER = Paper("Learning Features with Parameter-Free Layers", 2022, "ICLR", "2202.02777", id="S008",
                url="https://github.com/naver-ai/PfLayer", authors="Han et al.")
LSNET = Paper("LSNet: See Large, Focus Small", 2025, "CVPR", "2503.23135", id="S006",
              url="https://github.com/THU-MIG/lsnet", authors="Wang et al.")
AFFNET = Paper("Adaptive Frequency Filters As Efficient Global Token Mixers", 2023, "ICCV", "2307.14008", id="S055",
               url="https://github.com/microsoft/TokenMixers", authors="Huang et al.")
SPARTAN = Paper("SpaRTAN: Spatial Reinforcement Token-based Aggregation Network for Visual Recognition", 2025, "IJCNN",
                "2507.10999", id="S024", url="https://github.com/henry-pay/SpaRTAN",
                authors="Pay, Baskaran, Loo, Wong & See")
FFNET = Paper("MetaMixer Is All You Need", 2024, "arXiv", "2406.02021", id="S040",
              url="https://github.com/ysj9909/FFNet", authors="Yun et al.")
AIRBENCH = Paper("94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024, "arXiv", "2404.00498",
                 url="https://github.com/KellerJordan/cifar10-airbench", authors="Jordan")
CONVIT = Paper("ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases", 2021, "ICML",
               "2103.10697", id="S021", url="https://github.com/facebookresearch/convit", authors="d'Ascoli et al.")
SRET = Paper("Sliced Recursive Transformer", 2022, "ECCV", "2111.05297", id="S030",
             url="https://github.com/szq0214/SReT", authors="Shen, Liu & Xing")
DEEPVIT = Paper("DeepViT: Towards Deeper Vision Transformer", 2021, "arXiv", "2103.11886", id="S033",
                url="https://github.com/zhoudaquan/dvit_repo", authors="Zhou et al.")
HALONET = Paper("Scaling Local Self-Attention for Parameter Efficient Visual Backbones", 2021, "CVPR", "2103.12731",
                id="S066", authors="Vaswani et al.")
SWINV2 = Paper("Swin Transformer V2: Scaling Up Capacity and Resolution", 2022, "CVPR", "2111.09883", id="S078",
               url="https://github.com/microsoft/Swin-Transformer", authors="Liu et al.")
SWIN = Paper("Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", 2021, "ICCV", "2103.14030",
             id="S085", url="https://github.com/microsoft/Swin-Transformer", authors="Liu et al.")
GHOSTNET = Paper("GhostNet: More Features from Cheap Operations", 2020, "CVPR", "1911.11907", id="S098",
                 url="https://github.com/huawei-noah/Efficient-AI-Backbones", authors="Han et al.")
CGHOSTNET = Paper("GhostNets on Heterogeneous Devices via Cheap Operations", 2022, "IJCV", "2201.03297", id="S099",
                  url="https://github.com/huawei-noah/Efficient-AI-Backbones", authors="Han et al.")
INCEPTION_V4 = Paper("Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning", 2017, "AAAI",
                     "1602.07261", id="S017", authors="Szegedy, Ioffe, Vanhoucke & Alemi")
NASNET = Paper("Learning Transferable Architectures for Scalable Image Recognition", 2018, "CVPR", "1707.07012",
               id="S004", authors="Zoph, Vasudevan, Shlens & Le")
SIMPLENET = Paper("Lets Keep it Simple, Using Simple Architectures to Outperform Deeper and More Complex Architectures",
                  2016, "arXiv", "1608.06037", id="S020", url="https://github.com/Coderx7/SimpleNet_Pytorch",
                  authors="Hasanpour et al.")
IBNNET = Paper("Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net", 2018, "ECCV", "1807.09441",
               id="S052", url="https://github.com/XingangPan/IBN-Net", authors="Pan, Luo, Shi & Tang")
MGIC = Paper("MGIC: Multigrid-in-Channels Neural Network Architectures", 2023, "SIAM J. Sci. Comput.", "2011.09128",
             id="S106", authors="Eliasof, Ephrath, Ruthotto & Treister")
TRANSNEXT = Paper("TransNeXt: Robust Foveal Visual Perception for Vision Transformers", 2024, "CVPR", "2311.17132",
                  id="S025", url="https://github.com/DaiShiResearch/TransNeXt", authors="Shi")
MOAT = Paper("MOAT: Alternating Mobile Convolution and Attention Brings Strong Vision Models", 2023, "ICLR",
             "2210.01820", id="S053", url="https://github.com/google-research/deeplab2", authors="Yang et al.")
FCAFORMER = Paper("FcaFormer: Forward Cross Attention in Hybrid Vision Transformer", 2023, "ICCV", "2211.07198",
                  id="S044", authors="Zhang, Hu & Wang")
FMVIT = Paper("FMViT: A Multiple-Frequency Mixing Vision Transformer", 2023, "arXiv", "2311.05707", id="S050",
              url="https://github.com/tany0699/FMViT", authors="Tan et al.")
ITERNORM = Paper("Iterative Normalization: Beyond Standardization towards Efficient Whitening", 2019, "CVPR",
                 "1904.03441", url="https://github.com/huangleiBuaa/IterNorm", authors="Huang, Zhou, Zhu, Liu & Shao")
BW_CONV_UNIT = Paper("Improving Generalization of Batch Whitening by Convolutional Unit Optimization", 2021, "ICCV",
                     "2108.10629", id="S090", url="https://github.com/YooshinCho/pytorch_ConvUnitOptimization",
                     authors="Cho, Cho, Kim & Kim")
INVARIANCE_TRANSFORM = Paper("Exploiting Invariance in Training Deep Neural Networks", 2022, "AAAI", "2103.16634",
                             id="S095", authors="Ye, Zhou, McKinney, Liu, Zhou & Zhdanov")
BN_INIT = Paper("Revisiting Batch Norm Initialization", 2022, "ECCV", "2110.13989", id="S093",
                url="https://github.com/osu-cvl/revisiting-bn-init", authors="Davis & Frank")
CONVNORM = Paper("Convolutional Normalization: Improving Deep Convolutional Network Robustness and Training", 2021,
                 "NeurIPS", "2103.00673", id="S096", url="https://github.com/shengliu66/ConvNorm",
                 authors="Liu, Li, Zhai, You, Zhu, Fernandez-Granda & Qu")
GN_PLUS = Paper("Understanding and Improving Group Normalization", 2022, "arXiv", "2207.01972", id="S100",
                authors="Gunawan, Yin & Zhang")
WEIGHT_STD = Paper("Micro-Batch Training with Batch-Channel Normalization and Weight Standardization", 2019, "arXiv",
                   "1903.10520", url="https://github.com/joe-siyuan-qiao/WeightStandardization",
                   authors="Qiao, Wang, Liu, Shen & Yuille")
QUANT_WHITEPAPER = Paper("Quantizing deep convolutional networks for efficient inference: A whitepaper", 2018, "arXiv",
                         "1806.08342", id="S007", authors="Krishnamoorthi")
HYPER_CONNECTIONS = Paper("Hyper-Connections", 2025, "ICLR", "2409.19606", id="S001", authors="Zhu et al.")
SHALLOW_AGAIN = Paper("Make Deep Networks Shallow Again", 2023, "KDIR", "2309.08414", id="S012",
                      authors="Bermeitinger, Hrycej & Handschuh")
CONVBN_TUNE = Paper("Efficient ConvBN Blocks for Transfer Learning and Beyond", 2024, "ICLR", "2305.11624", id="S069",
                    authors="Xiong et al.")
TAYLOR_PRUNING = Paper("Importance Estimation for Neural Network Pruning", 2019, "CVPR", "1906.10771", id="S104",
                       url="https://github.com/NVlabs/Taylor_pruning",
                       authors="Molchanov, Mallya, Tyree, Frosio & Kautz")
HIER_PRUNING = Paper("Neural Network Compression via Effective Filter Analysis and Hierarchical Pruning", 2022, "arXiv",
                     "2206.03596", id="S107", authors="Zhou, Lian, Yin & Wang")
LRPET = Paper("Compact Model Training by Low-Rank Projection with Energy Transfer", 2022, "arXiv", "2204.05566",
              id="S094", url="https://github.com/BZQLin/LRPET", authors="Guo, Lin, Chen, Xing, Liu & Xu")
MEAL_V2 = Paper("MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on ImageNet without Tricks", 2020, "arXiv",
                "2009.08453", id="S027", url="https://github.com/szq0214/MEAL-V2", authors="Shen & Savvides")
FERKD = Paper("FerKD: Surgical Label Adaptation for Efficient Distillation", 2023, "ICCV", "2312.17473", id="S062",
              url="https://github.com/szq0214/FKD/tree/main/FerKD", authors="Shen")
EIGENCAM = Paper("Eigen-CAM: Class Activation Map using Principal Components", 2020, "IJCNN", "2008.00299", id="S088",
                 authors="Muhammad & Yeasin")
LINEARSCOPE = Paper("A Tour of Convolutional Networks Guided by Linear Interpreters", 2019, "ICCV", "1908.05168",
                    id="S022", authors="Navarrete Michelini, Liu, Lu & Jiang")
GRAD_NOISE = Paper("Adding Gradient Noise Improves Learning for Very Deep Networks", 2015, "arXiv", "1511.06807",
                   id="S010", authors="Neelakantan et al.")
GRADINIT = Paper("GradInit: Learning to Initialize Neural Networks for Stable and Efficient Training", 2021, "NeurIPS",
                 "2102.08098", id="S102", url="https://github.com/zhuchen03/gradinit", authors="Zhu et al.")
