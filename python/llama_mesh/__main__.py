from llama_mesh.cli import main

main()
