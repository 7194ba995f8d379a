"""Installation of iterdce: iterative synthesis of delayed DCE-MRI phases."""
from setuptools import find_packages, setup

COMMANDS = {
    "iterdce_simulate": "simulate",
    "iterdce_verify_dataset": "verify_dataset",
    "iterdce_plan_and_preprocess": "plan_and_preprocess",
    "iterdce_train": "train",
    "iterdce_predict": "predict",
    "iterdce_evaluate": "evaluate",
    "iterdce_demo": "demo",
    "iterdce_import_dicom": "import_dicom",
}

setup(
    name="iterdce",
    version="0.1.0",
    description="Self-configuring iterative synthesis of delayed-phase breast DCE-MRI",
    packages=find_packages(include=["iterdce", "iterdce.*"]),
    # the shipped phantom-pretrained model (iterdce_predict --pretrained)
    package_data={"iterdce.pretrained": ["*/*.json", "*/fold_all/*.pth", "*/fold_all/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "batchgenerators>=0.25",
        "nibabel>=5.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "pandas>=2.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "dcmri>=0.6.20",
        "dtaidistance>=2.3",
        "pydicom>=3.0,<4",
    ],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.4", "dcm2niix>=1.0.20220720"],
        "bench": ["monai>=1.3", "psutil>=5.9"],
    },
    entry_points={
        "console_scripts": [
            f"{name}=iterdce.commands.{module}:main" for name, module in COMMANDS.items()
        ]
    },
)
