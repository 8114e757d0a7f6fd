from hadeploy.cli import main

main()
