"""The three convnet-apps applications: car detection, face access, style transfer."""
